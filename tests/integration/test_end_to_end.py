"""Events posted over HTTP travel collector -> raw topic -> mediator -> processors -> indexer and land
in ClickHouse with their fields intact."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.helpers import post, wait_for

pytestmark = pytest.mark.integration


def rows_by_message_id(clickhouse, ids: list[str]) -> dict[str, dict]:
    rows, columns = clickhouse.execute(
        "SELECT * FROM hw_default.events WHERE message_id IN %(ids)s", {"ids": ids}, with_column_types=True
    )
    names = [name for name, _ in columns]
    found = [dict(zip(names, row)) for row in rows]
    return {row["message_id"]: row for row in found}


def wait_rows(clickhouse, ids: list[str]) -> dict[str, dict]:
    def all_landed():
        found = rows_by_message_id(clickhouse, ids)
        return found if len(found) == len(ids) else None

    return wait_for(all_landed)


def test_every_call_type_lands_with_its_fields(stack, clickhouse, settings):
    key = settings.default_write_key
    calls = {
        "track": {"event": "Signed Up", "properties": {"plan": "pro", "seats": 3, "ünïcode": "✓"}},
        "identify": {"userId": "user-42", "traits": {"email": "a@example.com"}},
        "page": {"name": "Home", "properties": {"path": "/"}},
        "screen": {"name": "Settings"},
        "group": {"groupId": "acme", "traits": {"size": 10}},
        "alias": {"userId": "user-42", "previousId": "anon-1"},
    }
    sent = {}
    for call, fields in calls.items():
        body = {"anonymousId": "visitor-e2e", "messageId": f"e2e-{call}-{uuid.uuid4()}",
                "context": {"library": {"name": "test"}}, **fields}
        reply = post(stack.collector_url, f"/v1/{call}", body, key)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"success": True}
        sent[body["messageId"]] = (call, body)

    rows = wait_rows(clickhouse, list(sent))
    for message_id, (call, body) in sent.items():
        row = rows[message_id]
        assert row["type"] == call
        assert row["event"] == (body["event"] if call == "track" else call)
        assert row["anonymous_id"] == "visitor-e2e"
        assert row["user_id"] == body.get("userId", "")
        assert orjson.loads(row["properties"]) == body.get("properties", {})
        traits = "group_traits" if call == "group" else "traits"  # a group's traits are the group's
        assert orjson.loads(row[traits]) == body.get("traits", {})
        assert row["previous_id"] == body.get("previousId", "") and row["group_id"] == body.get("groupId", "")
        assert orjson.loads(row["context"]) == body["context"]
        assert row["project_id"] == settings.default_project


def test_batch_lands_and_clock_skew_is_corrected(stack, clickhouse, settings):
    # The client's clock is 1 hour fast: the event happened 10 s before it was sent.
    batch = [
        {"type": "track", "event": f"step {i}", "anonymousId": f"v{i}", "messageId": f"batch-{uuid.uuid4()}",
         "timestamp": "2030-01-01T11:59:50.000Z"}
        for i in range(50)
    ]
    reply = post(stack.collector_url, "/v1/batch", {"batch": batch, "sentAt": "2030-01-01T12:00:00.000Z"},
                 settings.default_write_key)
    assert reply.status_code == 200, reply.text
    rows = wait_rows(clickhouse, [e["messageId"] for e in batch])
    for event in batch:
        row = rows[event["messageId"]]
        assert row["event"] == event["event"]
        skew_ms = (row["received_at"] - row["timestamp"]).total_seconds() * 1000
        assert 9_990 <= skew_ms <= 10_010


def test_generated_message_id_and_no_duplicates(stack, clickhouse, settings):
    marker = str(uuid.uuid4())
    reply = post(stack.collector_url, "/v1/track", {"event": marker, "anonymousId": "v-gen"},
                 settings.default_write_key)
    assert reply.status_code == 200
    query = f"SELECT message_id FROM hw_default.events WHERE event = '{marker}'"
    (message_id,) = wait_for(lambda: clickhouse.execute(query))[0]
    uuid.UUID(message_id)  # a generated UUID


def test_bad_requests_get_clear_errors_and_land_nowhere(stack, clickhouse, settings):
    url, key = stack.collector_url, settings.default_write_key
    unauthorised = post(url, "/v1/track", {"event": "x", "anonymousId": "a"}, "wrong-key")
    assert unauthorised.status_code == 401
    assert unauthorised.json()["reason"] == "invalid_write_key"
    assert post(url, "/v1/track", {"event": "x", "anonymousId": "a"}, None).status_code == 401

    malformed = post(url, "/v1/track", None, key, content=b"{not json")
    assert malformed.status_code == 400 and malformed.json()["reason"] == "malformed_json"

    missing_ids = post(url, "/v1/track", {"event": "x"}, key)
    assert missing_ids.status_code == 400
    assert missing_ids.json()["errors"][0]["field"] == "anonymousId"


def test_partly_invalid_batch_keeps_the_valid_events(stack, clickhouse, settings):
    good = {"type": "track", "event": "ok", "anonymousId": "v", "messageId": f"good-{uuid.uuid4()}"}
    bad = {"type": "track", "anonymousId": "v", "messageId": f"bad-{uuid.uuid4()}"}
    reply = post(stack.collector_url, "/v1/batch", {"batch": [bad, good]}, settings.default_write_key)
    assert reply.status_code == 200
    assert reply.json()["errors"] == [{"index": 0, "field": "event", "reason": "is required"}]
    wait_rows(clickhouse, [good["messageId"]])
    assert rows_by_message_id(clickhouse, [bad["messageId"]]) == {}
