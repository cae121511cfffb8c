"""Alerts on the real stack: the alerts role reads the stored events from Kafka, raises alerts into
headwater.alerts, the forwarder sends them to a webhook, a Slack-style hook and a real SMTP server, and
the indexer keeps them in the project's alerts table; a kill -9 of the role in the middle of a window
neither loses the window's count nor repeats an alert."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Admin, count_rows, post, wait_for
from tests.receivers import Receiver

pytestmark = pytest.mark.integration
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
MINUTE = timedelta(minutes=1)


def event(kind: str, at: datetime, visitor: str, **fields) -> dict:
    return {"type": kind, "messageId": str(uuid.uuid4()), "anonymousId": visitor,
            "timestamp": at.isoformat().replace("+00:00", "Z"), "context": {"userAgent": BROWSER}, **fields}


def send(stack, key: str, events: list[dict]) -> None:
    for start in range(0, len(events), 200):
        reply = post(stack.collector_url, "/v1/batch", {"batch": events[start:start + 200]}, key)
        assert reply.status_code == 200, reply.text


def channel(name: str, kind: str, settings: dict, **extra) -> dict:
    return {"name": name, "type": kind, "source": "alerts", "settings": settings,
            "batch": {"max_events": 20, "max_ms": 100}, **extra}


def new_project(settings, rules: list[dict], channels: list[dict]) -> tuple[str, str, str]:
    admin = Admin(settings)
    created = admin.create_project(prefix="alerts")
    project = created["project"]["id"]
    reply = admin.call("PATCH", f"/v1/projects/{project}/config", {"destinations": channels, "alerts": {"rules": rules}})
    assert reply.status_code == 200, reply.text
    return project, created["keys"]["server_key"], created["project"]["database"]


def alerts_of(receiver: Receiver, project: str) -> list[dict]:
    return [e["properties"] for e in receiver.delivered(project) if e.get("event") == "Alert"]


def stored_alerts(clickhouse, db: str) -> list[tuple]:
    return clickhouse.execute(f"SELECT rule, subject, count() FROM {db}.alerts FINAL GROUP BY rule, subject "
                              "ORDER BY rule, subject")


def test_an_event_rule_fires_once_per_matching_event_to_a_webhook_and_the_alerts_table(stack, settings, clickhouse,
                                                                                        receiver):
    rule = {"name": "big-order", "kind": "event", "when": {"all": [
        {"event": "Order Completed"}, {"field": "properties.revenue", "gt": 1000}]}}
    project, key, db = new_project(settings, [rule], [channel("ops", "webhook", {"url": receiver.url})])
    now = datetime.now(UTC)
    big = event("track", now, "buyer-1", event="Order Completed", properties={"revenue": 1500})
    send(stack, key, [event("track", now, "buyer-2", event="Order Completed", properties={"revenue": 30}), big,
                      event("track", now, "buyer-3", event="Signup Failed")])
    wait_for(lambda: alerts_of(receiver, project), 60)
    (alert,) = alerts_of(receiver, project)
    assert (alert["rule"], alert["kind"], alert["subject"], alert["message_id"]) == (
        "big-order", "event", "buyer-1", big["messageId"])
    wait_for(lambda: stored_alerts(clickhouse, db) == [("big-order", "buyer-1", 1)], 60)
    time.sleep(2)
    assert len(alerts_of(receiver, project)) == 1


def test_a_returning_enterprise_visitor_triggers_exactly_one_webhook_per_session(stack, settings, clickhouse, receiver):
    rule = {"name": "vip-back", "kind": "visitor", "after_days": 3, "when": {"all": [
        {"field": "traits.plan", "equals": "enterprise"}, {"field": "traits.email_domain", "equals": "acme.com"}]}}
    project, key, db = new_project(settings, [rule], [channel("sales", "webhook", {"url": receiver.url})])
    now = datetime.now(UTC)
    before = now - timedelta(days=10)
    page = {"context": {"userAgent": BROWSER, "page": {"path": "/pricing", "url": "https://shop.example/pricing"}}}
    send(stack, key, [
        event("identify", before, "ann-laptop", userId="ann", traits={"plan": "enterprise", "email": "ann@acme.com"}),
        event("page", before + MINUTE, "ann-laptop", **page),
        event("identify", before, "bob-laptop", userId="bob", traits={"plan": "free", "email": "bob@acme.com"}),
        event("page", before + MINUTE, "bob-laptop", **page),
    ])
    wait_for(lambda: count_rows(clickhouse, db) == 4, 60)
    # the identify calls merged each laptop into its user: the alerts role reads the merges as the
    # identity role commits them, before the indexer loads them
    wait_for(lambda: clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {db}.person_ids")[0][0] == 4, 60)
    # ann comes back ten days later: one session of three pages; bob comes back too (not enterprise)
    send(stack, key, [event("page", now + i * MINUTE / 6, who, **page) for i in range(3)
                      for who in ("ann-laptop", "bob-laptop")])
    wait_for(lambda: alerts_of(receiver, project), 60)
    wait_for(lambda: count_rows(clickhouse, db) == 10, 60)
    time.sleep(3)
    (alert,) = alerts_of(receiver, project)
    # the subject is the person the identify merged the laptop into
    assert (alert["rule"], alert["subject"], alert["visitor"], alert["page"]["path"]) == (
        "vip-back", "ann", "ann-laptop", "/pricing")
    assert "back after 10.0 days" in alert["text"]


def test_a_threshold_rule_fires_on_a_planted_drop_and_not_on_normal_traffic(stack, settings, receiver):
    rule = {"name": "checkout-drop", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 60,
            "change": {"against": "day", "drop_pct": 50}}
    project, key, _ = new_project(settings, [rule], [channel("team", "slack", {"webhook_url": receiver.url})])
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    yesterday = start - timedelta(days=1)
    checkouts = []
    for day, counts in ((yesterday, [10, 10, 10, 10]), (start, [10, 9, 12, 3])):  # the fourth minute drops 70%
        for minute, n in enumerate(counts):
            checkouts += [event("track", day + minute * MINUTE + timedelta(seconds=2 + i), "shopper",
                                event="Checkout") for i in range(n)]
    # one visitor, so one partition: the role reads them in time order; the last moves event time past
    # the fourth minute's end and the grace
    send(stack, key, [*checkouts, event("track", start + 6 * MINUTE, "shopper", event="Page Seen")])
    wait_for(lambda: receiver.requests, 60)
    time.sleep(3)
    texts = [line for _, _, body in receiver.requests for line in body["text"].splitlines()]
    assert len(texts) == 1, texts
    assert texts[0].startswith("*checkout-drop* 3 events, 70% fewer than the day before (10)")


def test_email_alerts_arrive_at_a_real_smtp_server(stack, settings, mailbox):
    rule = {"name": "signup-failed", "kind": "event", "when": {"event": "Signup Failed"}, "cooldown_s": 3600}
    project, key, _ = new_project(settings, [rule], [channel("oncall", "email", {"to": ["oncall@example.com"]})])
    now = datetime.now(UTC)
    send(stack, key, [event("track", now + i * MINUTE / 60, "visitor-x", event="Signup Failed") for i in range(3)])
    wait_for(lambda: mailbox.to("oncall@example.com"), 60)
    time.sleep(2)
    (message,) = [m for m in mailbox.to("oncall@example.com") if project in m["Subject"]]  # the cooldown: one
    assert message["Subject"].startswith(f"[Headwater {project}] signup-failed Signup Failed by visitor-x")
    assert message["From"] == "alerts@headwater.test"
    assert "signup-failed" in message.get_content()


def test_a_kill_9_mid_window_neither_loses_the_count_nor_repeats_an_alert(stack, settings, clickhouse, receiver):
    rules = [{"name": "busy", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 60, "above": 4},
             {"name": "each", "kind": "event", "when": {"event": "Checkout"}}]
    project, key, db = new_project(settings, rules, [channel("ops", "webhook", {"url": receiver.url})])
    window = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)

    def checkouts(seconds: range) -> list[dict]:
        return [event("track", window + timedelta(seconds=s), "shopper", event="Checkout") for s in seconds]

    first = checkouts(range(0, 2))  # the first at the window's start: the rule counts from that window
    send(stack, key, [event("track", window - MINUTE, "shopper", event="Page Seen"), *first])  # committed
    wait_for(lambda: len([a for a in alerts_of(receiver, project) if a["rule"] == "each"]) == 2, 60)
    with stack.restarted_with("alerts", HEADWATER_ALERTS_FAULT_HOLD_S="120") as role:
        held = checkouts(range(10, 13))
        send(stack, key, held)  # counted in a transaction held open, then killed
        wait_for(lambda: "fault_hold" in role.log_of_this_run(), 60)
        role.proc.kill()
        role.proc.wait()
    last = checkouts(range(30, 32))
    send(stack, key, [*last, event("track", window + 3 * MINUTE, "shopper", event="Page Seen")])
    each = {e["messageId"] for e in first + held + last}
    wait_for(lambda: {a["message_id"] for a in alerts_of(receiver, project) if a["rule"] == "each"} == each, 90)
    wait_for(lambda: [a for a in alerts_of(receiver, project) if a["rule"] == "busy"], 60)
    time.sleep(3)
    busy = [a for a in alerts_of(receiver, project) if a["rule"] == "busy"]
    assert [a["count"] for a in busy] == [7]  # 2 committed + 3 counted again after the kill + 2
    assert len([a for a in alerts_of(receiver, project) if a["rule"] == "each"]) == len(each)  # none twice
    wait_for(lambda: clickhouse.execute(f"SELECT rule, count(), uniqExact(alert_id) FROM {db}.alerts "
                                        "GROUP BY rule ORDER BY rule") == [("busy", 1, 1), ("each", 7, 7)], 60)


def test_a_visitors_threshold_counts_distinct_visitors(stack, settings, clickhouse, receiver):
    rule = {"name": "crowd", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 60,
            "count": "visitors", "above": 2}
    marker = {"name": "seen", "kind": "event", "when": {"field": "properties.crowd", "equals": True}}
    project, key, db = new_project(settings, [rule, marker], [channel("ops", "webhook", {"url": receiver.url})])
    window = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    crowd = [event("track", window + timedelta(seconds=s), who, event="Checkout", properties={"crowd": True})
             for s, who in ((0, "v1"), (5, "v2"), (6, "v2"), (9, "v3"))]
    alone = [event("track", window + MINUTE + timedelta(seconds=s), "v1", event="Checkout") for s in range(5)]

    def seen() -> int:
        return len([a for a in alerts_of(receiver, project) if a["rule"] == "seen"])

    # each crowd event's marker alert says the role has read it: the first, at the window's start, so
    # the rule counts from that window; then the others (on other partitions, read in any order)
    # before the later events move event time past the window's end, which closes it
    send(stack, key, crowd[:1])
    wait_for(lambda: seen() == 1, 60)
    send(stack, key, crowd[1:])
    wait_for(lambda: seen() == 4, 60)
    send(stack, key, alone)
    wait_for(lambda: count_rows(clickhouse, db) == 9, 60)

    def crowds() -> list[dict]:
        return [a for a in alerts_of(receiver, project) if a["rule"] == "crowd"]

    wait_for(crowds, 60)
    time.sleep(3)
    (alert,) = crowds()
    assert (alert["count"], alert["window_start"]) == (3, window.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    assert alert["text"].startswith("3 visitors, above 2")


def merged_ids(clickhouse, db: str) -> int:
    return clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {db}.person_ids")[0][0]


def test_a_persons_threshold_counts_the_ids_of_a_merged_person_once(stack, settings, clickhouse, receiver):
    rules = [{"name": "persons", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 60,
              "count": "persons", "above": 1},
             {"name": "ids", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 60,
              "count": "visitors", "above": 1},
             {"name": "first-seen", "kind": "event", "when": {"field": "properties.first", "equals": True}}]
    project, key, db = new_project(settings, rules, [channel("ops", "webhook", {"url": receiver.url})])
    window = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=20)
    # pam's phone and laptop are one person before the window's events are sent
    send(stack, key, [event("identify", window - timedelta(hours=1), device, userId="pam")
                      for device in ("pam-phone", "pam-laptop")])
    wait_for(lambda: merged_ids(clickhouse, db) == 3, 60)
    checkouts = [event("track", window + timedelta(seconds=s), who, event="Checkout", properties={"first": s == 0})
                 for s, who in ((0, "pam-phone"), (5, "pam-laptop"), (9, "carl"))]
    send(stack, key, checkouts[:1])  # the rules count from the window of their first event
    wait_for(lambda: alerts_of(receiver, project), 60)
    send(stack, key, checkouts[1:])
    wait_for(lambda: count_rows(clickhouse, db) == 5, 60)

    def counted() -> dict[str, int]:
        return {a["rule"]: a["count"] for a in alerts_of(receiver, project) if a["rule"] in ("persons", "ids")}

    wait_for(lambda: len(counted()) == 2, 60)
    assert counted() == {"persons": 2, "ids": 3}
    (persons,) = [a for a in alerts_of(receiver, project) if a["rule"] == "persons"]
    assert persons["text"].startswith("2 persons, above 1")


def test_a_visitor_rule_with_a_cohort_fires_for_a_member_starting_a_session_only(stack, settings, clickhouse,
                                                                                   receiver):
    buyers = {"name": "buyers", "rules": [{"did": "Order Completed", "at_least": 2, "within_days": 30}]}
    rule = {"name": "buyer-back", "kind": "visitor", "cohort": "buyers"}
    admin = Admin(settings)
    created = admin.create_project(prefix="alerts")
    project, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    refused = admin.call("PATCH", f"/v1/projects/{project}/config", {"alerts": {"rules": [rule]}})
    assert refused.status_code == 400 and "has no cohort 'buyers'" in refused.text
    reply = admin.call("PATCH", f"/v1/projects/{project}/config", {
        "cohorts": [buyers], "alerts": {"rules": [rule]},
        "destinations": [channel("sales", "webhook", {"url": receiver.url})]})
    assert reply.status_code == 200, reply.text
    now = datetime.now(UTC)
    # cara orders twice in one session (so she is a member only after her session began); dan once
    orders = [event("track", now - timedelta(hours=3, minutes=m), who, event="Order Completed")
              for who, m in (("cara", 2), ("cara", 1), ("dan", 2))]
    send(stack, key, orders)
    wait_for(lambda: count_rows(clickhouse, db) == 3, 60)
    time.sleep(3)  # a refresh of the cohort's members (every second in the tests) after the orders landed
    back = [event("page", now, who) for who in ("cara", "dan")]
    send(stack, key, back)
    wait_for(lambda: alerts_of(receiver, project), 60)
    wait_for(lambda: count_rows(clickhouse, db) == 5, 60)
    time.sleep(3)
    (alert,) = alerts_of(receiver, project)
    assert (alert["rule"], alert["subject"], alert["message_id"]) == ("buyer-back", "cara", back[0]["messageId"])
