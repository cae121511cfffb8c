"""The right to erasure: a person's events and sessions, under every id linked to them, are deleted;
nobody else's are."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration


def test_erase_removes_a_person_and_only_them(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    project_id, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    person, anon, other = "user-erase", f"anon-{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    phone = f"phone-{uuid.uuid4().hex[:6]}"  # linked to the person only by an alias, never on one event
    batch = [
        {"type": "page", "anonymousId": anon, "name": "Home"},  # before they signed in
        {"type": "identify", "anonymousId": anon, "userId": person, "traits": {"email": "p@example.com"}},
        {"type": "track", "userId": person, "event": "Bought"},
        {"type": "page", "anonymousId": other, "name": "Home"},
        {"type": "page", "anonymousId": phone, "name": "Home"},
        {"type": "alias", "previousId": phone, "userId": person},
    ]
    assert post(stack.collector_url, "/v1/batch", {"batch": batch}, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, db) == 6)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {db}.sessions")[0][0] == 4)
    wait_for(lambda: clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {db}.person_ids")[0][0] == 3)

    exported = subprocess.run([sys.executable, "-m", "headwater", "export", "--project", project_id, "--person", phone],
                              env=stack.env, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr[-2000:]
    document = json.loads(exported.stdout)  # a right-of-access request, by any of the person's ids
    assert document["person"] == person and sorted(document["ids"]) == sorted([person, anon, phone])
    assert len(document["events"]) == 5 and {e["anonymous_id"] or e["user_id"] for e in document["events"]} == {
        anon, person, phone}
    assert all(e["anonymous_id"] != other for e in document["events"])
    assert {s["visitor_id"] for s in document["sessions"]} == {anon, person, phone}
    assert {m["distinct_id"] for m in document["merges"]} == {person, anon, phone}
    assert document["traits"] == {"email": "p@example.com"}

    blank = subprocess.run([sys.executable, "-m", "headwater", "erase", "--project", project_id, "--user", ""],
                           env=stack.env, capture_output=True, text=True, timeout=120)
    assert blank.returncode != 0 and "an id is 1 to 1000 characters" in blank.stderr  # not every id-less row
    assert count_rows(clickhouse, db) == 6

    done = subprocess.run([sys.executable, "-m", "headwater", "erase", "--project", project_id, "--user", person],
                          env=stack.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ids"] == sorted([person, anon, phone]) and report["events"] == 5
    assert report["identity"] == "forgotten" and report["person_ids"] == 3

    remaining = clickhouse.execute(f"SELECT anonymous_id, user_id FROM {db}.events")
    assert remaining == [(other, "")]
    visitors = clickhouse.execute(f"SELECT DISTINCT visitor_id FROM {db}.sessions")
    assert visitors == [(other,)]
    assert clickhouse.execute(f"SELECT count() FROM {db}.person_ids") == [(0,)]
    # the identity role forgot them too: the laptop's id is free to join another user, which it
    # would refuse (already identified) had it kept the person
    again = {"type": "identify", "anonymousId": anon, "userId": "next-owner"}
    assert post(stack.collector_url, "/v1/batch", {"batch": [again]}, key).status_code == 200
    wait_for(lambda: clickhouse.execute(f"SELECT argMax(person_id, version) FROM {db}.person_ids "
                                        "WHERE distinct_id = %(id)s", {"id": anon}) == [("next-owner",)], 60)
    assert clickhouse.execute(f"SELECT count() FROM {db}.failed_events") == [(0,)]


def test_retention_drops_old_events_and_keeps_recent_ones(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project_id, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()  # within the accepted two years
    batch = [{"type": "track", "event": "old", "anonymousId": "a", "timestamp": old},
             {"type": "track", "event": "new", "anonymousId": "b"}]
    assert post(stack.collector_url, "/v1/batch", {"batch": batch}, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, db) == 2)  # both stored while the project keeps everything

    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"retention_days": 0}).status_code == 400
    # keeping everything, as it already does, is no change and no error (ClickHouse refuses to remove
    # a TTL that is not there)
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"retention_days": None}).status_code == 200
    reply = admin.call("PATCH", f"/v1/projects/{project_id}/config", {"retention_days": 30})
    assert reply.status_code == 200 and reply.json()["project"]["retention_days"] == 30

    def only_new():
        clickhouse.execute(f"OPTIMIZE TABLE {db}.events FINAL")  # TTL applies when parts merge
        return clickhouse.execute(f"SELECT event FROM {db}.events") == [("new",)]

    wait_for(only_new, timeout_s=30)
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"retention_days": None}).status_code == 200
    assert "TTL" not in clickhouse.execute(f"SHOW CREATE TABLE {db}.events")[0][0]
