"""Persons on the real stack: a visitor who signs up on a laptop and logs in on a phone is one person in
unique counts, in a funnel across the login and in retention, while counting ids still sees two; a
merge naming an illegal id, or taking a shared device's id from another user, is refused as a typed
dead letter; the identity role restores its merges after a kill -9."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics import people, queries
from analytics.filters import Filters
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)  # a Monday
PERSONS, IDS = Filters(), Filters(count_ids=True)


BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def event(kind: str, at: datetime, **fields) -> dict:
    """An event sent from a browser (without a user agent it would count as a bot's)."""
    context = {"userAgent": BROWSER, **fields.pop("context", {})}
    return {"type": kind, "messageId": str(uuid.uuid4()), "timestamp": at.isoformat().replace("+00:00", "Z"),
            "context": context, **fields}


def send(stack, key: str, events: list[dict]) -> None:
    reply = post(stack.collector_url, "/v1/batch", {"batch": events}, key)
    assert reply.status_code == 200, reply.text


def laptop_then_phone(user: str, laptop: str, phone: str) -> tuple[list[dict], list[dict]]:
    """A visitor browses and signs up on a laptop in week 0, then logs in and orders on a phone in week 1."""
    on_laptop = [
        event("page", T0, anonymousId=laptop, name="Home", context={"page": {"url": "https://shop.example/"}}),
        event("track", T0 + timedelta(minutes=1), anonymousId=laptop, event="Signup Started"),
        event("identify", T0 + timedelta(minutes=2), anonymousId=laptop, userId=user, traits={"plan": "pro"}),
        event("track", T0 + timedelta(minutes=3), anonymousId=laptop, userId=user, event="Signed Up"),
    ]
    later = T0 + timedelta(days=8)
    on_phone = [
        event("page", later, anonymousId=phone, name="Home", context={"page": {"url": "https://shop.example/"}}),
        event("identify", later + timedelta(minutes=1), anonymousId=phone, userId=user),
        event("track", later + timedelta(minutes=2), anonymousId=phone, userId=user, event="Order Completed"),
    ]
    return on_laptop, on_phone


def run(clickhouse, query: queries.Query) -> list[tuple]:
    return clickhouse.execute(query.sql, query.params)


def merged(clickhouse, db: str, distinct_id: str) -> str | None:
    rows = clickhouse.execute(f"SELECT argMax(person_id, version) FROM {db}.person_ids WHERE distinct_id = %(id)s "
                              "GROUP BY distinct_id", {"id": distinct_id})
    return rows[0][0] if rows else None


def test_one_person_across_a_login_on_two_devices(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    project, db = created["project"]["id"], created["project"]["database"]
    key = created["keys"]["server_key"]
    on_laptop, on_phone = laptop_then_phone("user-1", "laptop-1", "phone-1")
    bystander = [event("page", T0 + timedelta(days=8), anonymousId="solo-1", name="Home",
                       context={"page": {"url": "https://shop.example/"}})]
    send(stack, key, on_laptop + on_phone + bystander)
    wait_for(lambda: count_rows(clickhouse, db) == 8 and merged(clickhouse, db, "phone-1") == "user-1", 60)
    assert {merged(clickhouse, db, i) for i in ("laptop-1", "phone-1", "user-1")} == {"user-1"}
    assert merged(clickhouse, db, "solo-1") is None  # never merged: a person of its own, without a row

    since, until = T0 - timedelta(days=1), T0 + timedelta(days=20)
    visitors = {count: sum(row[3] for row in run(clickhouse, queries.trends(project, since, until, interval="month",
                                                                             filters=filters)))
                for count, filters in (("persons", PERSONS), ("ids", IDS))}
    assert visitors == {"persons": 2, "ids": 3}

    steps = ["Signup Started", "Order Completed"]
    funnel = {count: [row[1] for row in run(clickhouse, queries.funnel(project, steps, since, until, 30 * 86400,
                                                                       filters=filters))]
              for count, filters in (("persons", PERSONS), ("ids", IDS))}
    assert funnel == {"persons": [1, 1], "ids": [1, 0]}  # the ids never finish: the order came from the phone

    def returned(filters: Filters) -> dict:
        rows = run(clickhouse, queries.retention(project, since, until, period="week", periods=2,
                                                 cohort_event="Signup Started", filters=filters))
        return {later: n for _, _, later, n in rows}

    assert returned(PERSONS) == {0: 1, 1: 1}  # the phone's week counts as the person's return
    assert returned(IDS) == {0: 1}
    wait_for(lambda: run(clickhouse, queries.new_sessions(project, since, until, IDS)) == [(3, 0)], 30)
    assert run(clickhouse, queries.new_sessions(project, since, until, PERSONS)) == [(2, 1)]  # the phone's returns
    query = queries.top(project, "pages", since, until, filters=PERSONS)
    assert "person_ids" in query.sql and "person_ids" not in queries.top(project, "pages", since, until,
                                                                         filters=IDS).sql
    assert run(clickhouse, query) == [("/", 2, 3)]  # three page views by two persons


def test_illegal_and_already_identified_merges_are_refused_as_dead_letters(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    send(stack, key, [
        event("identify", T0, anonymousId="undefined", userId="user-a"),
        event("identify", T0 + timedelta(minutes=1), anonymousId="shared-tablet", userId="user-b"),
        event("identify", T0 + timedelta(minutes=2), anonymousId="shared-tablet", userId="user-c"),
    ])
    wait_for(lambda: count_rows(clickhouse, db) == 3, 60)

    def refusals() -> list[tuple]:
        return clickhouse.execute(f"SELECT step, reason, path FROM {db}.failed_events ORDER BY reason")

    wait_for(lambda: len(refusals()) == 2, 60)
    assert refusals() == [("identity", "merge_already_identified", "anonymousId"),
                          ("identity", "merge_illegal_id", "anonymousId")]
    wait_for(lambda: merged(clickhouse, db, "shared-tablet") == "user-b", 30)  # the first user keeps the device
    assert merged(clickhouse, db, "undefined") is None and merged(clickhouse, db, "user-c") is None


def remerge(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwater", "remerge", *args], env=stack.env, capture_output=True,
                          text=True, timeout=300)


def test_remerge_applies_calls_kafka_no_longer_holds_and_merges_a_setting_now_allows(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    send(stack, key, [event("identify", T0, anonymousId="shared-tablet", userId="user-b"),
                      event("identify", T0 + timedelta(minutes=1), anonymousId="shared-tablet", userId="user-c")])
    refusals = f"SELECT reason FROM {db}.failed_events"
    wait_for(lambda: clickhouse.execute(refusals) == [("merge_already_identified",)], 60)
    wait_for(lambda: merged(clickhouse, db, "shared-tablet") == "user-b", 60)
    wait_for(lambda: count_rows(clickhouse, db) == 2, 60)
    # an identify only ClickHouse holds, as one older than the 7 days Kafka keeps would be
    clickhouse.execute(f"INSERT INTO {db}.events (message_id, type, anonymous_id, user_id, timestamp, received_at) VALUES",
                       [(str(uuid.uuid4()), "identify", "old-laptop", "user-old", T0, T0 + timedelta(seconds=1))])
    assert admin.call("PATCH", f"/v1/projects/{project}/config",
                      {"identity": {"merge_identified": True}}).status_code == 200

    done = remerge(stack, "--project", project)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert (report["calls"], report["batches"], report["identity"]) == (3, 1, "applied")
    assert (report["merged_ids_before"], report["merged_ids_after"]) == (2, 5)
    assert merged(clickhouse, db, "old-laptop") == "user-old" == merged(clickhouse, db, "user-old")
    assert merged(clickhouse, db, "user-c") == "user-b"  # the refused call, allowed now
    assert clickhouse.execute(refusals) == [("merge_already_identified",)]  # the old refusal, no new one

    again = json.loads(remerge(stack, "--project", project).stdout)  # merges already made change nothing
    assert (again["calls"], again["merged_ids_before"], again["merged_ids_after"]) == (3, 5, 5)
    versions = clickhouse.execute(f"SELECT count(), uniqExact(distinct_id) FROM {db}.person_ids")
    assert versions == [(5, 5)]
    later = json.loads(remerge(stack, "--project", project, "--from", "2027-01-01").stdout)
    assert (later["calls"], later["batches"], later["identity"]) == (0, 0, "applied")
    unknown = remerge(stack, "--project", "no_such_project")
    assert unknown.returncode != 0 and "headwater remerge: ClickHouse refused it" in unknown.stderr
    malformed = remerge(stack, "--project", "no-such-project")
    assert malformed.returncode != 0 and "project id 'no-such-project' must match" in malformed.stderr
    bad_date = remerge(stack, "--project", project, "--from", "last week")
    assert bad_date.returncode == 2 and "'last week' is not an ISO date" in bad_date.stderr


def test_merges_survive_a_kill_9_of_the_identity_role(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    on_laptop, _ = laptop_then_phone("user-k", "laptop-k", "phone-k")
    send(stack, key, [*on_laptop, event("identify", T0, anonymousId="desk-j", userId="user-j")])
    wait_for(lambda: merged(clickhouse, db, "laptop-k") == "user-k" and merged(clickhouse, db, "desk-j") == "user-j",
             60)
    identity = stack.child("identity")
    identity.proc.kill()  # kill -9
    identity.proc.wait()
    identity.start(stack.env)
    # a third device links to the person the restarted role restored; user-j logging in on user-k's
    # laptop is refused, as it would have been before the kill
    send(stack, key, [event("identify", T0 + timedelta(days=2), anonymousId="tablet-k", userId="user-k"),
                      event("identify", T0 + timedelta(days=2, minutes=1), anonymousId="laptop-k", userId="user-j")])
    wait_for(lambda: merged(clickhouse, db, "tablet-k") == "user-k", 90)
    wait_for(lambda: count_rows(clickhouse, db) == 7, 60)
    wait_for(lambda: clickhouse.execute(f"SELECT reason FROM {db}.failed_events") == [("merge_already_identified",)],
             60)
    assert merged(clickhouse, db, "laptop-k") == "user-k"
    versions = clickhouse.execute(f"SELECT distinct_id, count(), uniqExact(version) FROM {db}.person_ids "
                                  "GROUP BY distinct_id ORDER BY distinct_id")
    assert versions == [("desk-j", 1, 1), ("laptop-k", 1, 1), ("tablet-k", 1, 1), ("user-j", 1, 1), ("user-k", 1, 1)]


def test_the_people_queries_read_one_person_across_its_devices(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    project, db = created["project"]["id"], created["project"]["database"]
    on_laptop, on_phone = laptop_then_phone("user-p", "laptop-p", "phone-p")
    on_phone[1]["traits"] = {"plan": "team", "$set_once": {"first_plan": "free", "plan": "ignored"}, "$unset": ["tmp"]}
    on_laptop[2]["traits"] = {"plan": "pro", "email": "p@example.com", "tmp": 1}
    send(stack, key := created["keys"]["server_key"], on_laptop + on_phone)
    send(stack, key, [event("page", T0, anonymousId="other-p", name="Home")])
    wait_for(lambda: count_rows(clickhouse, db) == 8 and merged(clickhouse, db, "phone-p") == "user-p", 60)
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=20)

    listed = {row[0]: row for row in run(clickhouse, people.people(project, since, until))}
    assert set(listed) == {"user-p", "other-p"} and sorted(listed["user-p"][1]) == ["laptop-p", "phone-p"]
    found = run(clickhouse, people.people(project, since, until, search="p@example.com"))
    assert [row[0] for row in found] == ["user-p"]  # an email from the first identify, not the latest
    assert [row[0] for row in run(clickhouse, people.people(project, since, until, search="phone-p"))] == ["user-p"]
    by_id = run(clickhouse, people.people(project, since, until, filters=IDS))
    assert sorted(row[0] for row in by_id) == ["laptop-p", "other-p", "phone-p"]

    assert run(clickhouse, people.person_of(project, "phone-p")) == [("user-p",)]
    ids = ["user-p", *(row[0] for row in run(clickhouse, people.person_ids(project, "user-p")) if row[0] != "user-p")]
    assert sorted(ids) == ["laptop-p", "phone-p", "user-p"]
    [profile] = run(clickhouse, people.profile(project, ids))
    events, sessions, first_seen, last_seen = profile[:4]
    assert (events, sessions) == (7, 2) and first_seen.date() == T0.date() and (last_seen - first_seen).days == 8
    traits = people.fold_traits([row[0] for row in run(clickhouse, people.identifies(project, ids))])
    assert traits == {"plan": "team", "email": "p@example.com", "first_plan": "free"}
    timeline = run(clickhouse, people.timeline(project, ids, 10))
    assert [row[4] for row in timeline] == ["phone-p"] * 3 + ["laptop-p"] * 4  # newest first, both devices
    assert {row[1] for row in run(clickhouse, people.sessions(project, ids))} == {"laptop-p", "phone-p"}
