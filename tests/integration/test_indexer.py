"""The indexer against real Kafka and ClickHouse: exact counts across a kill -9 between INSERT and
commit, a ClickHouse outage (paused, lag exported, resumed, nothing lost), client retries collapsing
by message id, and unreadable records dead-lettered."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from headwater.flow import INDEX_STEP
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, SESSIONS_HEADER
from headwater.topics import step_topic
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration


def events(n: int, tag: str) -> list[dict]:
    return [{"type": "track", "event": "Played", "anonymousId": f"{tag}-visitor-{i % 17}",
             "messageId": f"{tag}-{i}", "properties": {"i": i}} for i in range(n)]


def send(stack, key: str, batch: list[dict]) -> None:
    for start in range(0, len(batch), 100):
        reply = post(stack.collector_url, "/v1/batch", {"batch": batch[start:start + 100]}, key)
        assert reply.status_code == 200, reply.text


def metric(stack, role: str, name: str) -> float:
    """The sum of a metric's samples, as the role serves it."""
    text = httpx.get(stack.metrics_url(role), timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def exact(clickhouse, db: str) -> tuple[int, int]:
    return clickhouse.execute(f"SELECT count(), uniqExact(message_id) FROM {db}.events")[0]


def test_kill_9_between_insert_and_commit_keeps_counts_exact(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    with stack.restarted_with("indexer", HEADWATER_INDEXER_FAULT_HOLD_S="120") as indexer:
        send(stack, key, events(300, "a"))
        wait_for(lambda: count_rows(clickhouse, db) > 0, timeout_s=60)  # inserted, held before the commit
        wait_for(lambda: "fault_hold" in indexer.log_of_this_run())
        indexer.proc.kill()
        indexer.proc.wait()
        inserted_before_crash = count_rows(clickhouse, db)
        send(stack, key, events(200, "b"))  # the replayed range will not match the first batch
    wait_for(lambda: count_rows(clickhouse, db) >= 500, timeout_s=90)
    wait_for(lambda: metric(stack, "indexer", "headwater_consumer_lag_total") == 0, timeout_s=60)
    assert exact(clickhouse, db) == (500, 500)
    assert metric(stack, "indexer", "headwater_indexer_records_skipped_total") > 0
    assert 0 < inserted_before_crash <= 500


def test_clickhouse_down_pauses_then_resumes_with_nothing_lost(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    stack.child("clickhouse").stop()
    try:
        send(stack, key, events(400, "down"))  # the collector needs Kafka only
        wait_for(lambda: metric(stack, "indexer", "headwater_indexer_paused") == 1, timeout_s=60)
        wait_for(lambda: metric(stack, "indexer", "headwater_consumer_lag_total") > 0, timeout_s=30)
        assert metric(stack, "indexer", "headwater_indexer_insert_failures_total") >= 1
        assert stack.child("indexer").alive()
    finally:
        stack.restart("clickhouse")
    clickhouse.disconnect()
    wait_for(lambda: count_rows(clickhouse, db) == 400, timeout_s=120)
    wait_for(lambda: metric(stack, "indexer", "headwater_indexer_paused") == 0, timeout_s=30)
    wait_for(lambda: metric(stack, "indexer", "headwater_consumer_lag_total") == 0, timeout_s=60)
    assert exact(clickhouse, db) == (400, 400)


def send_twice(stack, key: str) -> str:
    """An event and a client's retry of it (same messageId, its own sentAt), in separate batches."""
    event = {"type": "track", "event": "Paid", "anonymousId": "retrier", "messageId": str(uuid.uuid4()),
             "timestamp": "2026-11-20T10:00:00.000Z"}
    for sent_at in ("2026-11-20T10:00:01.000Z", "2026-11-20T10:00:09.000Z"):
        assert post(stack.collector_url, "/v1/batch", {"batch": [event], "sentAt": sent_at}, key).status_code == 200
        time.sleep(1.5)
    return event["messageId"]


def test_a_client_retry_is_one_row(stack, settings, clickhouse):
    admin = Admin(settings)
    # the default flow: the sessionizer recognises the copy and drops it
    created = admin.create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    send_twice(stack, key)
    wait_for(lambda: count_rows(clickhouse, db) >= 1, timeout_s=60)
    time.sleep(3)  # time for a second row, were it coming
    assert count_rows(clickhouse, db) == 1
    # a flow without the sessionizer: both copies reach the table and collapse by message id
    created = admin.create_project()
    project_id, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": ["validate", "index"]}).status_code == 200
    time.sleep(1)  # the collector and the mediator see the new flow within a second
    send_twice(stack, key)
    wait_for(lambda: count_rows(clickhouse, db) >= 2, timeout_s=60)
    assert clickhouse.execute(f"SELECT count() FROM {db}.events FINAL")[0][0] == 1
    clickhouse.execute(f"OPTIMIZE TABLE {db}.events FINAL")
    assert count_rows(clickhouse, db) == 1


async def test_an_unreadable_record_is_dead_lettered_and_the_rest_lands(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    project, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        headers = [(PROJECT_HEADER, project.encode()), (EVENTS_HEADER, b"2")]
        for value in (b"not json", b'[{"project_id": "someone_else", "message_id": "x"}]'):
            await producer.send_and_wait(step_topic(settings, INDEX_STEP), value, headers=headers)
        # sessions for two events beside one
        one = orjson.dumps([{"project_id": project, "message_id": "y", "received_at_ms": 0, "request_id": "r",
                             "event": {"type": "track"}, "enriched": {}}])
        await producer.send_and_wait(step_topic(settings, INDEX_STEP), one, headers=[
            (PROJECT_HEADER, project.encode()), (EVENTS_HEADER, b"1"), (SESSIONS_HEADER, b'[["s_1", 1], ["s_1", 2]]')])
    finally:
        await producer.stop()
    send(stack, key, events(50, "ok"))
    wait_for(lambda: count_rows(clickhouse, db) == 50, timeout_s=60)

    def dead():
        return clickhouse.execute(f"SELECT reason, origin_topic, (origin_partition, origin_offset) "
                                  f"FROM {db}.failed_events WHERE step = 'index'")

    rows = wait_for(lambda: len(dead()) == 3 and dead(), timeout_s=60)
    assert {(reason, topic) for reason, topic, _ in rows} == {("unparseable", step_topic(settings, INDEX_STEP))}
    assert len({position for _, _, position in rows}) == 3


def envelope_of(project: str, month: int) -> dict:
    return {"project_id": project, "message_id": f"m-{month}-{uuid.uuid4().hex[:6]}", "received_at_ms": 0,
            "request_id": "r", "event": {"type": "track", "event": "Old", "anonymousId": "v",
                                         "timestamp": f"{1990 + month // 12}-{month % 12 + 1:02d}-01T00:00:00Z"},
            "enriched": {}}


async def test_a_record_clickhouse_refuses_is_dead_lettered_and_loading_goes_on(stack, settings, clickhouse):
    """Events in 101 months (from a producer other than the collector, which refuses such times) make
    an INSERT ClickHouse refuses (too many partitions): that record is split off and dead-lettered, one
    dead letter per event, and the records around it still land."""
    created = Admin(settings).create_project()
    project, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    send(stack, key, events(30, "before"))
    refused = [envelope_of(project, month) for month in range(101)]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(step_topic(settings, INDEX_STEP), orjson.dumps(refused), headers=[
            (PROJECT_HEADER, project.encode()), (EVENTS_HEADER, b"101")])
    finally:
        await producer.stop()
    send(stack, key, events(30, "after"))
    wait_for(lambda: count_rows(clickhouse, db) == 60, timeout_s=60)

    def dead():
        return clickhouse.execute(f"SELECT reason, message_id, detail FROM {db}.failed_events WHERE step = 'index'")

    rows = wait_for(lambda: len(dead()) == 101 and dead(), timeout_s=60)
    assert {reason for reason, _, _ in rows} == {"refused"}
    assert {message_id for _, message_id, _ in rows} == {e["message_id"] for e in refused}
    assert "partitions" in rows[0][2]
    assert count_rows(clickhouse, db, "event = 'Old'") == 0
    assert metric(stack, "indexer", "headwater_indexer_records_refused_total") >= 1
