"""Real third-party SDKs, used as their users use them, pointed at the collector: every call type
arrives in ClickHouse intact, with the messageId the SDK generated."""

from __future__ import annotations

import uuid

import orjson
import pytest

from tests.helpers import Admin, wait_for

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


def test_node_sdks_send_every_call(stack, settings, clickhouse):
    """Segment's and RudderStack's Node libraries (sdks/js/test/sdks.mjs), every call type."""
    import subprocess
    from pathlib import Path

    prefix = f"node-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["node", "test/sdks.mjs", stack.collector_url, settings.default_write_key, prefix],
                          cwd=Path(__file__).resolve().parents[2] / "sdks" / "js", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    query = ("SELECT user_id, type, event, properties, traits, JSONExtractString(context, 'library', 'name') "
             "FROM hw_default.events WHERE startsWith(user_id, %(prefix)s)")
    rows = wait_for(lambda: (r := clickhouse.execute(query, {"prefix": prefix})) and len(r) >= 12 and r,
                    timeout_s=60)
    for sdk, library in (("segment", "@segment/analytics-node"), ("rudderstack", "analytics-node")):
        mine = [r for r in rows if r[0] == f"{prefix}-{sdk}"]
        assert sorted(r[1] for r in mine) == sorted(["track", "identify", "page", "screen", "group", "alias"])
        track = next(r for r in mine if r[1] == "track")
        assert track[2] == "Order Completed" and orjson.loads(track[3]) == {"total": 42.5, "items": ["a"]}
        identify = next(r for r in mine if r[1] == "identify")
        assert orjson.loads(identify[4]) == {"email": f"{prefix}-{sdk}@example.com", "plan": "pro"}
        assert all(library in r[5] for r in mine), {r[5] for r in mine}


def test_the_rudderstack_browser_sdk_before_identify(stack, clickhouse):
    """RudderStack's browser SDK (sdks/js/test/rudderstack-browser.mjs, in Chromium) sends "userId": ""
    until identify. Refusing that (a 400 for a single event, `rejected` in a 200 for a batch) loses the
    events: the SDK takes them as delivered. Both modes must land every event."""
    import json
    import socket
    import subprocess
    from pathlib import Path

    with socket.socket() as probe:  # a free port for the page's own origin
        probe.bind(("127.0.0.1", 0))
        site_port = probe.getsockname()[1]
    created = Admin(stack.settings).create_project(origins=[f"http://127.0.0.1:{site_port}"], prefix="rs_browser")
    key, db = created["keys"]["public_key"], created["project"]["database"]
    prefix = f"rs-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["node", "test/rudderstack-browser.mjs", stack.collector_url, key, prefix, str(site_port)],
                          cwd=Path(__file__).resolve().parents[2] / "sdks" / "js", capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    answers = json.loads(done.stdout)["answers"]
    assert {a["mode"] for a in answers} == {"single", "batch"}
    assert all(a["status"] == 200 and "rejected" not in a["body"] for a in answers), answers
    sent = [json.loads(a["body"]) for a in answers]
    assert all(body == {"success": True} for body in sent)
    query = f"SELECT anonymous_id, user_id, type, event FROM {db}.events"
    rows = wait_for(lambda: (r := clickhouse.execute(query)) and len(r) >= 4 and r, timeout_s=60)
    assert sorted((anonymous, kind) for anonymous, _, kind, _ in rows) == [
        (f"{prefix}-batch", "page"), (f"{prefix}-batch", "track"), (f"{prefix}-single", "page"),
        (f"{prefix}-single", "track")]
    assert {user for _, user, _, _ in rows} == {""}
