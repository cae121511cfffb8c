"""Real third-party SDKs, used as their users use them, pointed at the collector: every call type
arrives in ClickHouse intact, with the messageId the SDK generated."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def segment_client(url: str, key: str, errors: list):
    from segment.analytics import Client

    return Client(key, host=url, on_error=lambda error, batch: errors.append(error), max_retries=1)


def rudder_client(url: str, key: str, errors: list):
    from rudderstack.analytics import Client

    return Client(key, host=url, on_error=lambda error, batch: errors.append(error), gzip=True, max_retries=1)


def send_every_call(client, user: str, anon: str) -> dict[str, tuple[str, dict]]:
    calls = {
        "track": client.track(user_id=user, event="Order Completed", properties={"total": 42.5, "items": ["a"]}),
        "identify": client.identify(user_id=user, traits={"email": f"{user}@example.com", "plan": "pro"}),
        "page": client.page(user_id=user, category="Docs", name="Install", properties={"path": "/install"}),
        "screen": client.screen(user_id=user, name="Settings", properties={"tab": "privacy"}),
        "group": client.group(user_id=user, group_id="acme", traits={"seats": 10}),
        "alias": client.alias(previous_id=anon, user_id=user),
    }
    sent = {}
    for call, (queued, message) in calls.items():
        assert queued, f"the SDK refused to queue {call}"
        sent[message["messageId"]] = (call, message)
    client.flush()
    return sent


@pytest.mark.parametrize("make_client", [segment_client, rudder_client], ids=["segment", "rudderstack"])
def test_sdk_events_arrive_intact(stack, settings, clickhouse, make_client):
    errors: list = []
    client = make_client(stack.collector_url, settings.default_write_key, errors)
    user, anon = f"user-{uuid.uuid4().hex[:8]}", f"anon-{uuid.uuid4().hex[:8]}"
    sent = send_every_call(client, user, anon)
    client.shutdown()
    assert errors == []

    query = ("SELECT message_id, type, event, user_id, properties, traits, context FROM hw_default.events "
             "WHERE message_id IN %(ids)s")
    rows = wait_for(lambda: (r := clickhouse.execute(query, {"ids": list(sent)})) and len(r) == len(sent) and r)
    for message_id, kind, event, user_id, properties, traits, context in rows:
        call, message = sent[message_id]
        assert kind == call and user_id == user
        if call == "track":
            assert event == "Order Completed"
            assert orjson.loads(properties) == {"total": 42.5, "items": ["a"]}
        if call == "identify":
            assert orjson.loads(traits) == {"email": f"{user}@example.com", "plan": "pro"}
        if call == "page":
            assert orjson.loads(properties)["path"] == "/install"
        assert orjson.loads(context)["library"]["name"] == message["context"]["library"]["name"]
