"""The event catalogue on real Kafka and ClickHouse: what the admin API lists (event names, call types,
properties and the types seen, volumes, first and last seen, registered schemas) matches what was sent."""

from __future__ import annotations

import pytest

from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration


def test_the_catalogue_matches_what_was_sent(stack, clickhouse, settings):
    admin = Admin(settings)
    created = admin.create_project()
    project_id, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    schema = {"type": "object", "properties": {"total": {"type": "number"}}}
    assert admin.call("POST", f"/v1/projects/{project_id}/schemas",
                      {"event": "Order Completed", "version": "1-0-0", "schema": schema}).status_code == 201
    batch = [{"type": "track", "event": "Order Completed", "anonymousId": f"v{n}", "messageId": f"o-{n}",
              "timestamp": f"2026-12-0{1 + n % 3}T10:00:00Z",
              "properties": {"total": 10 * n if n % 2 else 9.5, "coupon": "WINTER"} if n < 4 else {"total": 1}}
             for n in range(6)]
    batch += [{"type": "track", "event": "Signed Up", "anonymousId": "v9", "messageId": "s-1",
               "properties": {"plan": "pro", "trial": True, "tags": ["a"]}},
              {"type": "identify", "userId": "u1", "messageId": "i-1", "traits": {"email": "x@example.com"}},
              {"type": "page", "anonymousId": "v9", "messageId": "p-1", "name": "Home"},
              # a sender inventing property names: the catalogue lists the 100 most used of an event
              {"type": "track", "event": "Wide", "anonymousId": "v9", "messageId": "w-1",
               "properties": {f"p{i:03}": i for i in range(150)}},
              {"type": "track", "event": "Wide", "anonymousId": "v9", "messageId": "w-2", "properties": {"p149": 1}}]
    reply = post(stack.collector_url, "/v1/batch", {"batch": batch}, key)
    assert reply.status_code == 200, reply.text
    wait_for(lambda: count_rows(clickhouse, db) >= 11, timeout_s=60)

    def listed() -> dict:
        reply = admin.call("GET", f"/v1/projects/{project_id}/catalogue?days=3660")
        assert reply.status_code == 200, reply.text
        return {(e["event"], e["type"]): e for e in reply.json()["events"]}

    events = wait_for(lambda: (found := listed()) and len(found) == 5 and found, timeout_s=30)
    order = events[("Order Completed", "track")]
    assert (order["events"], order["schema_versions"]) == (6, ["1-0-0"])
    assert order["first_seen"] == "2026-12-01T10:00:00.000Z" and order["last_seen"] == "2026-12-03T10:00:00.000Z"
    assert [(p["name"], p["types"], p["events"]) for p in order["properties"]] == [
        ("total", {"double": 2, "int64": 4}, 6), ("coupon", {"string": 4}, 4)]
    signed_up = events[("Signed Up", "track")]
    assert {p["name"]: p["types"] for p in signed_up["properties"]} == {
        "plan": {"string": 1}, "trial": {"bool": 1}, "tags": {"array": 1}}
    assert signed_up["schema_versions"] == []
    assert [p["name"] for p in events[("identify", "identify")]["properties"]] == ["traits.email"]
    assert events[("page", "page")]["events"] == 1
    wide = [p["name"] for p in events[("Wide", "track")]["properties"]]
    assert len(wide) == 100 and wide[0] == "p149" and wide[1:] == [f"p{i:03}" for i in range(99)]

    refused = admin.call("GET", f"/v1/projects/{project_id}/catalogue?days=0")
    assert refused.status_code == 400 and "days is a whole number" in refused.text
    assert admin.call("GET", "/v1/projects/nope/catalogue").status_code == 404
