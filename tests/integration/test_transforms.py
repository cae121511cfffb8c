"""Transform steps on real Kafka and ClickHouse: declarative and Python transformations change, split
and drop events, with their lineage stored; a raising or slow transformation dead-letters its events
and the rest go on; a transformation changed at runtime applies to the next events, none lost. The
Python transformations are tests/transforms/*.py (the session's transforms_dir)."""

from __future__ import annotations

import time

import pytest

from tests.helpers import Admin, count_rows, post, wait_for, wait_for_equal

pytestmark = pytest.mark.integration


def tidy(env: str) -> dict:
    return {"step": "transform", "name": "tidy", "do": [
        {"set": "properties.env", "value": env},
        {"rename": "properties.cost", "to": "properties.total"},
        {"drop_if": {"field": "properties.internal", "equals": True}}]}


def flow(env: str = "prod") -> list:
    return ["validate", "enrich", "anonymize", tidy(env),
            {"step": "transform", "name": "orders", "python": "tag_order", "when": {"event": "Order *"}},
            {"step": "transform", "name": "items", "python": "fan_out", "when": {"event": "Cart Viewed"}},
            {"step": "transform", "name": "boom", "python": "explode", "when": {"event": "Explode"}},
            {"step": "transform", "name": "slow", "python": "sleepy", "when": {"event": "Sleep"}},
            "sessionize", "index"]


def event(name: str, n: int, tag: str, **properties) -> dict:
    return {"type": "track", "event": name, "anonymousId": f"{tag}-v{n % 3}", "messageId": f"{tag}-{n}",
            "properties": properties}


@pytest.fixture(scope="module")
def project(settings):
    admin = Admin(settings)
    created = admin.create_project()
    project_id = created["project"]["id"]
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": flow()}).status_code == 200
    time.sleep(1)  # the mediator and the transform step see the new flow within a second
    return admin, project_id, created["keys"]["server_key"], created["project"]["database"]


def send(stack, key: str, batch: list[dict]) -> None:
    reply = post(stack.collector_url, "/v1/batch", {"batch": batch}, key)
    assert reply.status_code == 200, reply.text


def test_transformations_change_split_and_drop_events_and_record_lineage(stack, clickhouse, project):
    _, _, key, db = project
    send(stack, key, [event("Order Completed", n, "order", cost=50 * n) for n in range(4)]
         + [event("Cart Viewed", n, "cart", items=[f"sku-{n}-{i}" for i in range(3)]) for n in range(5)]
         + [event("Cart Viewed", 0, "empty", items=[])]
         + [event("Page Seen", n, "internal", internal=True) for n in range(6)])
    wait_for(lambda: count_rows(clickhouse, db) >= 4 + 15, timeout_s=60)
    orders = clickhouse.execute(
        f"SELECT JSONExtractString(properties, 'tier'), JSONExtractInt(properties, 'total'), "
        f"JSONExtractString(properties, 'env'), transforms FROM {db}.events WHERE event = 'Order Completed' "
        "ORDER BY message_id")
    assert [row[:3] for row in orders] == [("standard", 0, "prod"), ("standard", 50, "prod"),
                                           ("gold", 100, "prod"), ("gold", 150, "prod")]
    tidy_version = orders[0][3][0]
    assert tidy_version.startswith("tidy@d") and orders[0][3] == [tidy_version, "orders@1.4.0"]
    items = clickhouse.execute(f"SELECT message_id, JSONExtractString(properties, 'sku'), transforms, "
                               f"session_id != '' FROM {db}.events WHERE event = 'Item Viewed' ORDER BY message_id")
    assert [row[:2] for row in items[:3]] == [("cart-0", "sku-0-0"), ("cart-0:1", "sku-0-1"), ("cart-0:2", "sku-0-2")]
    assert len(items) == 15 and all(row[2] == [tidy_version, "items@2.0.1"] and row[3] for row in items)
    time.sleep(2)  # the internal events and the empty cart were dropped, not late
    assert count_rows(clickhouse, db) == 19
    assert count_rows(clickhouse, db, "startsWith(message_id, 'internal-') OR startsWith(message_id, 'empty-')") == 0
    # what each step did, as the processes counted it: [in, out, dropped, dead-lettered]
    every = [16, 16, 0, 0]
    expected = {"mediator": every, "validate": every, "enrich": every, "anonymize": every,
                "transform:tidy": [16, 10, 6, 0], "transform:orders": [4, 4, 0, 0], "transform:items": [6, 15, 1, 0],
                "sessionize": [19, 19, 0, 0]}
    wait_for_equal(lambda: step_counts(clickhouse, db), expected)


def step_counts(clickhouse, db: str) -> dict[str, list[int]]:
    return {step: list(figures) for step, *figures in clickhouse.execute(
        f"SELECT step, sum(events_in), sum(events_out), sum(dropped), sum(dead_lettered) FROM {db}.step_counts "
        "GROUP BY step")}


def test_a_raising_or_slow_transformation_dead_letters_and_the_rest_go_on(stack, clickhouse, project):
    _, _, key, db = project
    before = count_rows(clickhouse, db)
    send(stack, key, [event("Explode", n, "boom") for n in range(3)] + [event("Sleep", 0, "slow")]
         + [event("Order Completed", n, "after", cost=10) for n in range(5)])
    wait_for(lambda: count_rows(clickhouse, db, "startsWith(message_id, 'after-')") == 5, timeout_s=60)
    failed = wait_for(lambda: (rows := clickhouse.execute(
        f"SELECT message_id, step, reason, detail FROM {db}.failed_events ORDER BY message_id")) and
        len(rows) >= 4 and rows, timeout_s=60)
    assert [row[:3] for row in failed] == [("boom-0", "transform:boom", "transform_error")] * 1 + [
        ("boom-1", "transform:boom", "transform_error"), ("boom-2", "transform:boom", "transform_error"),
        ("slow-0", "transform:slow", "transform_timeout")]
    assert "KeyError: 'no_such_field' (explode.py:6 in transform: return event[" in failed[0][3]
    assert "sleepy took more than 50 ms" in failed[3][3]
    assert count_rows(clickhouse, db) == before + 5


def test_a_transformation_changed_at_runtime_applies_to_the_next_events_none_lost(stack, clickhouse, project):
    admin, project_id, key, db = project
    send(stack, key, [event("Signed Up", n, "before") for n in range(10)])
    wait_for(lambda: count_rows(clickhouse, db, "event = 'Signed Up'") >= 10, timeout_s=60)
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": flow("staging")}).status_code == 200
    time.sleep(1)
    send(stack, key, [event("Signed Up", n, "changed") for n in range(10)])
    wait_for(lambda: count_rows(clickhouse, db, "event = 'Signed Up'") >= 20, timeout_s=60)
    rows = dict(clickhouse.execute(
        f"SELECT splitByChar('-', message_id)[1] AS batch, groupUniqArray(JSONExtractString(properties, 'env')) "
        f"FROM {db}.events WHERE event = 'Signed Up' GROUP BY batch"))
    assert rows["before"] == ["prod"] and rows["changed"] == ["staging"]
    versions = clickhouse.execute(f"SELECT uniqExact(transforms[1]) FROM {db}.events WHERE event = 'Signed Up'")
    assert versions == [(2,)]  # the changed step has a new version in lineage
    assert count_rows(clickhouse, db, "event = 'Signed Up'") == 20
