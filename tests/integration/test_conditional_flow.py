"""Conditional flows on real Kafka and ClickHouse: each event goes through exactly the steps its
conditions name, an event whose route skips ``index`` is dropped and counted, a bad flow is refused
with every problem named, and a flow changed at runtime applies to the next events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration

FLOW = ["validate", {"step": "enrich", "when": {"event": "Order *"}}, "anonymize", "sessionize",
        {"step": "index", "when": {"not": {"field": "properties.test", "equals": True}}}]


def track(name: str, n: int, tag: str, **properties) -> dict:
    return {"type": "track", "event": name, "anonymousId": f"{tag}-v{n % 3}", "messageId": f"{tag}-{n}",
            "properties": properties, "context": {"page": {"url": "https://shop.example/cart?x=1"}}}


def send(stack, key: str, batch: list[dict]) -> None:
    reply = post(stack.collector_url, "/v1/batch", {"batch": batch}, key)
    assert reply.status_code == 200, reply.text


def dropped_by_flow(stack) -> float:
    text = httpx.get(stack.metrics_url("mediator"), timeout=5).text
    return sum(float(v) for v in re.findall(r"^headwater_dropped_by_flow_total (\S+)$", text, re.MULTILINE))


def test_each_event_goes_through_the_steps_its_conditions_name(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project_id, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": FLOW}).status_code == 200
    time.sleep(1)  # the mediator sees the new flow within a second
    dropped_before = dropped_by_flow(stack)
    send(stack, key, [track("Order Completed", n, "order") for n in range(20)]
         + [track("Signed Up", n, "signup") for n in range(15)]
         + [track("Order Completed", n, "test", test=True) for n in range(10)])
    wait_for(lambda: count_rows(clickhouse, db) >= 35, timeout_s=60)
    rows = clickhouse.execute(f"SELECT event, url_host, session_id != '', count() FROM {db}.events "
                              "GROUP BY event, url_host, session_id != '' ORDER BY event")
    # only the orders were enriched (the page's host); every event went on through the sessionizer
    assert rows == [("Order Completed", "shop.example", True, 20), ("Signed Up", "", True, 15)]
    wait_for(lambda: dropped_by_flow(stack) - dropped_before == 10, timeout_s=10)
    assert count_rows(clickhouse, db, "startsWith(message_id, 'test-')") == 0

    # back to the default flow: the next test events are stored, nothing before them is lost
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": None}).status_code == 200
    time.sleep(1)
    send(stack, key, [track("Order Completed", n, "later", test=True) for n in range(5)])
    wait_for(lambda: count_rows(clickhouse, db) >= 40, timeout_s=60)
    time.sleep(2)
    assert count_rows(clickhouse, db) == 40
    assert count_rows(clickhouse, db, "startsWith(message_id, 'later-') AND url_host = 'shop.example'") == 5


def test_the_route_command_shows_each_events_route(stack, settings, tmp_path):
    admin = Admin(settings)
    project_id = admin.create_project()["project"]["id"]
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": FLOW}).status_code == 200
    events = tmp_path / "events.json"
    events.write_text(json.dumps([track("Order Completed", 1, "a"), track("Signed Up", 2, "b", test=True)]))

    def route(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "headwater", "project", "route", project_id, "--event",
                               str(events), *extra], env=stack.env, capture_output=True, text=True, timeout=60)

    shown = json.loads(route().stdout)["events"]
    assert shown == [
        {"messageId": "a-1", "route": ["validate", "enrich", "anonymize", "sessionize", "index"], "stored": True},
        {"messageId": "b-2", "route": ["validate", "anonymize", "sessionize"], "stored": False}]
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps([{"step": "index", "when": {"type": "click"}}]))
    refused = route("--flow", str(flow))
    assert refused.returncode != 0 and "when.type: unknown type 'click'" in refused.stderr


def test_a_bad_flow_is_refused_with_every_problem_named(settings):
    admin = Admin(settings)
    project_id = admin.create_project()["project"]["id"]
    reply = admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": [
        {"step": "validate", "when": {"type": "click"}}, {"step": "enrich", "when": {"field": "body", "equals": 1}},
        {"step": "index", "when": {"event": "*a" * 9}}]})
    assert reply.status_code == 400, reply.text
    detail = reply.text
    for problem in ("step 0 (validate) when.type: unknown type 'click'", "step 1 (enrich) when.field: a path",
                    "step 2 (index) when.event: a glob has more than 8"):
        assert problem in detail


def test_a_flow_nested_thousands_deep_is_refused_not_a_crash(settings):
    admin = Admin(settings)
    project_id = admin.create_project()["project"]["id"]
    body = '{"flow": ' + "[" * 50_000 + "]" * 50_000 + "}"
    reply = httpx.patch(f"{admin.url}/v1/projects/{project_id}/config", content=body, headers=admin.headers,
                        timeout=30)
    assert reply.status_code == 400 and "nested too deeply" in reply.text


def test_a_slip_name_given_as_a_step_is_refused_not_a_crash(settings):
    admin = Admin(settings)
    project_id = admin.create_project()["project"]["id"]
    for flow in (["transform:x", "index"], [{"step": "transform:x"}, "index"]):
        reply = admin.call("PATCH", f"/v1/projects/{project_id}/config", {"flow": flow})
        assert reply.status_code == 400 and "unknown step 'transform:x'" in reply.text, reply.text
