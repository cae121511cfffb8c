"""The collector against the real stack: projects and keys, origins, limits, content handling."""

from __future__ import annotations

import gzip
import json
import uuid

import httpx
import orjson
import pytest

from tests.helpers import Admin, basic_auth, count_rows, post, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin(stack):
    return Admin(stack.settings)


@pytest.fixture(scope="module")
def project(admin):
    return admin.create_project(origins=["https://shop.example", "https://*.blog.example"])


def track(message_id: str | None = None, **extra) -> dict:
    return {"type": "track", "event": "Viewed", "anonymousId": "v1", "messageId": message_id or str(uuid.uuid4()),
            **extra}


def test_admin_api_needs_its_token(admin):
    assert httpx.get(admin.url + "/v1/projects").status_code == 401
    wrong = httpx.get(admin.url + "/v1/projects", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["reason"] == "unauthorized"


def test_created_project_has_its_database_and_takes_events(stack, admin, project, clickhouse):
    database = project["project"]["database"]
    tables = {row[0] for row in clickhouse.execute(f"SHOW TABLES FROM {database}")}
    assert "events" in tables
    listed = admin.call("GET", "/v1/projects").json()["projects"]
    assert project["project"]["id"] in {p["id"] for p in listed}

    public, server = project["keys"]["public_key"], project["keys"]["server_key"]
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    assert post(stack.collector_url, "/v1/track", track(ids[0]), public).status_code == 200
    assert post(stack.collector_url, "/v1/track", track(ids[1]), server).status_code == 200
    wait_for(lambda: count_rows(clickhouse, database, "message_id IN %(ids)s", {"ids": ids}) == 2)
    # The key wrote only into its own project's database.
    assert count_rows(clickhouse, "hw_default", "message_id IN %(ids)s", {"ids": ids}) == 0


def test_requests_are_counted_but_not_logged_one_by_one(stack, project):
    """The access log is opt-in (``access_log``): a line per request is a line per event for a browser."""
    log = stack.child("collector").log_path
    before = log.stat().st_size
    for _ in range(5):
        assert post(stack.collector_url, "/v1/track", track(), project["keys"]["public_key"]).status_code == 200
    assert b'"event":"request"' not in log.read_bytes()[before:]
    metrics = httpx.get(f"{stack.collector_url}/metrics").text
    assert 'headwater_collector_requests_total{route="/v1/track",status="200"}' in metrics


def test_bad_admin_input_is_a_4xx(admin, project):
    assert admin.call("POST", "/v1/projects", {"id": "Not Valid!"}).status_code == 400
    assert admin.call("POST", "/v1/projects", {"id": project["project"]["id"]}).status_code == 409
    assert admin.call("GET", "/v1/projects/nope").status_code == 404
    bad_origin = admin.call("PUT", f"/v1/projects/{project['project']['id']}/origins", {"origins": ["ftp://x"]})
    assert bad_origin.status_code == 400


def test_origins_are_enforced(stack, project):
    public, server = project["keys"]["public_key"], project["keys"]["server_key"]
    url = stack.collector_url
    allowed = post(url, "/v1/track", track(), public, {"Origin": "https://shop.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert post(url, "/v1/track", track(), public, {"Origin": "https://news.blog.example"}).status_code == 200

    refused = post(url, "/v1/track", track(), public, {"Origin": "https://evil.example"})
    assert refused.status_code == 403 and refused.json()["reason"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in refused.headers
    # A server key is secret: never accepted from a browser, even from an allowed origin.
    assert post(url, "/v1/track", track(), server, {"Origin": "https://shop.example"}).status_code == 403

    preflight = httpx.options(url + "/v1/t", headers={
        "Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, anonymousid, sentat"})
    assert preflight.status_code == 204
    assert "anonymousid" in preflight.headers["access-control-allow-headers"]


def test_another_projects_key_is_refused_from_this_projects_origin(stack, admin, project):
    other = admin.create_project(origins=["https://other.example"])
    reply = post(stack.collector_url, "/v1/track", track(), other["keys"]["public_key"],
                 {"Origin": "https://shop.example"})
    assert reply.status_code == 403


def test_key_rotation_keeps_the_old_key_for_the_grace_period(stack, admin):
    created = admin.create_project()
    project_id, old_key = created["project"]["id"], created["keys"]["public_key"]
    rotated = admin.call("POST", f"/v1/projects/{project_id}/rotate-keys", {"grace_seconds": 3600}).json()
    new_key = rotated["keys"]["public_key"]
    assert new_key != old_key and rotated["project"]["public_key"] == new_key
    status = lambda key: post(stack.collector_url, "/v1/track", track(), key).status_code  # noqa: E731
    wait_for(lambda: status(new_key) == 200, timeout_s=5)
    assert status(old_key) == 200

    admin.call("POST", f"/v1/projects/{project_id}/rotate-keys", {"grace_seconds": 0})
    # Within seconds, without a restart, the collector refuses the keys that just expired.
    wait_for(lambda: status(new_key) == 401, timeout_s=5)
    assert status(old_key) == 401


def test_disabled_project_is_refused_then_enabled_again(stack, admin):
    created = admin.create_project()
    project_id, key = created["project"]["id"], created["keys"]["server_key"]
    admin.call("POST", f"/v1/projects/{project_id}/disable")
    wait_for(lambda: post(stack.collector_url, "/v1/track", track(), key).status_code == 403, timeout_s=5)
    reply = post(stack.collector_url, "/v1/track", track(), key)
    assert reply.json()["reason"] == "project_disabled"
    admin.call("POST", f"/v1/projects/{project_id}/enable")
    wait_for(lambda: post(stack.collector_url, "/v1/track", track(), key).status_code == 200, timeout_s=5)


def test_size_limits(stack, settings):
    url, key = stack.collector_url, settings.default_write_key
    huge_body = {"batch": [track(properties={"pad": "x" * 20_000}) for _ in range(30)]}
    assert post(url, "/v1/batch", huge_body, key).status_code == 413

    big_event = track(properties={"pad": "x" * 40_000})
    too_big = post(url, "/v1/track", big_event, key)
    assert too_big.status_code == 413 and too_big.json()["reason"] == "too_large"

    mixed = post(url, "/v1/batch", {"batch": [big_event, track()]}, key)
    assert mixed.status_code == 200
    assert mixed.json()["rejected"] == 1 and mixed.json()["errors"][0]["reason"] == "too_large"


def test_too_deeply_nested_events_get_400_with_a_reason(stack, settings, clickhouse):
    url, key = stack.collector_url, settings.default_write_key
    deep_ids = [str(uuid.uuid4()) for _ in range(2)]
    deepest = properties = {}
    for _ in range(252):  # with the event and its properties, 254 levels: the most that is accepted
        deepest["p"] = deepest = {}
    body = json.dumps({"batch": [track(deep_ids[0], properties=properties),
                                 track(deep_ids[1], properties={"q": properties})]})
    reply = httpx.post(url + "/v1/batch", content=body, headers={**basic_auth(key), "Content-Type": "application/json"})
    assert reply.status_code == 200
    assert reply.json()["rejected"] == 1 and reply.json()["errors"][0]["reason"] == "too_deep"
    wait_for(lambda: count_rows(clickhouse, "hw_default", "message_id IN %(ids)s", {"ids": deep_ids}) == 1)
    assert count_rows(clickhouse, "hw_default", "message_id = %(id)s", {"id": deep_ids[0]}) == 1


def test_content_types_and_encodings(stack, settings, clickhouse):
    url, key = stack.collector_url, settings.default_write_key
    ids = [str(uuid.uuid4()) for _ in range(3)]
    headers = basic_auth(key)
    as_text = httpx.post(url + "/v1/track", content=orjson.dumps(track(ids[0])),
                         headers={**headers, "Content-Type": "text/plain;charset=UTF-8"})
    assert as_text.status_code == 200
    gzipped = httpx.post(url + "/v1/batch", content=gzip.compress(orjson.dumps({"batch": [track(ids[1])]})), headers={**headers, "Content-Type": "application/json",
                                                        "Content-Encoding": "gzip"})
    assert gzipped.status_code == 200
    key_in_body = httpx.post(url + "/v1/b", content=orjson.dumps(
        {"writeKey": key, "batch": [track(ids[2])]}), headers={"Content-Type": "text/plain"})
    assert key_in_body.status_code == 200
    wait_for(lambda: count_rows(clickhouse, "hw_default", "message_id IN %(ids)s", {"ids": ids}) == 3)

    xml = httpx.post(url + "/v1/track", content=b"<e/>", headers={**headers, "Content-Type": "application/xml"})
    assert xml.status_code == 415
    brotli = httpx.post(url + "/v1/track", content=b"{}", headers={
        **headers, "Content-Type": "application/json", "Content-Encoding": "br"})
    assert brotli.status_code == 415
    corrupt = httpx.post(url + "/v1/track", content=b"\x1f\x8bnot gzip", headers={
        **headers, "Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert corrupt.status_code == 400


def test_errors_name_each_invalid_field(stack, settings):
    reply = post(stack.collector_url, "/v1/batch", {"batch": [
        {"type": "track", "anonymousId": "a"},
        {"type": "alias", "anonymousId": "a"},
        {"type": "page", "userId": "u", "timestamp": "yesterday", "context": []},
        "not an object",
    ]}, settings.default_write_key)
    assert reply.status_code == 400
    errors = {(e["index"], e["field"]) for e in reply.json()["errors"]}
    assert {(0, "event"), (1, "previousId"), (1, "userId"), (2, "timestamp"), (2, "context"), (3, "")} <= errors


def test_odd_but_valid_input_is_accepted_intact(stack, settings, clickhouse):
    message_id = "ünïcødé-✓-" + str(uuid.uuid4())
    props = {"emoji": "🎉", "rtl": "مرحبا", "nul": "a\u0000b", "nested": {"deep": [1, {"x": None}]}, "": "empty key"}
    reply = post(stack.collector_url, "/v1/track", {"event": "Ünïcode 🎉", "userId": 12345, "messageId": message_id,
                                                    "properties": props}, settings.default_write_key,
                 {"User-Agent": "Mozilla/5.0 ünï".encode(), "X-Weird-Header": "a  ,; value=\"q\""})
    assert reply.status_code == 200
    row = wait_for(lambda: clickhouse.execute(
        "SELECT event, user_id, properties FROM hw_default.events WHERE message_id = %(m)s", {"m": message_id}))
    event, user_id, properties = row[0]
    assert (event, user_id, orjson.loads(properties)) == ("Ünïcode 🎉", "12345", props)


def test_compact_tracker_endpoint(stack, settings, clickhouse):
    message_id = str(uuid.uuid4())
    body = {"k": settings.default_write_key, "s": 1_760_000_000_500, "e": [{
        "t": "p", "n": "Home", "a": "anon-compact", "m": message_id, "ts": 1_760_000_000_000,
        "c": {"u": "https://shop.example/?utm_source=news", "r": "https://google.com/", "ti": "Home",
              "sw": 390, "sh": 844, "l": "en-GB", "tz": "Europe/London"}}]}
    reply = httpx.post(stack.collector_url + "/v1/hw", content=orjson.dumps(body),
                       headers={"Content-Type": "text/plain", "Origin": "https://anything.example"})
    assert reply.status_code == 200, reply.text
    row = wait_for(lambda: clickhouse.execute(
        "SELECT type, anonymous_id, context, received_at - timestamp FROM hw_default.events "
        "WHERE message_id = %(m)s", {"m": message_id}))
    kind, anonymous_id, context, skew = row[0]
    assert (kind, anonymous_id) == ("page", "anon-compact")
    context = orjson.loads(context)
    assert context["page"]["url"] == "https://shop.example/?utm_source=news"
    assert context["screen"] == {"width": 390, "height": 844}
    assert context["library"]["name"] == "headwater.js"
    assert float(skew) == pytest.approx(0.5, abs=0.002)


def test_health_and_metrics(stack):
    assert httpx.get(stack.collector_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(stack.collector_url + "/readyz").status_code == 200
    metrics = httpx.get(stack.collector_url + "/metrics").text
    assert 'headwater_collector_requests_total{route="/v1/track",status="200"}' in metrics
    assert "headwater_collector_events_accepted_total" in metrics
    assert 'headwater_collector_events_rejected_total{reason="invalid_write_key"}' in metrics
    assert "headwater_collector_produce_seconds_bucket" in metrics
    assert "headwater_collector_in_flight_requests" in metrics


def test_served_openapi_matches_the_copy_in_the_repo(stack):
    from pathlib import Path

    served = httpx.get(stack.collector_url + "/openapi.json").json()
    kept = orjson.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_bytes())
    assert served == kept


def test_project_cli(stack, settings):
    import json
    import subprocess
    import sys

    def cli(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "headwater", "project", *args], env=stack.env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    project_id = f"cli_{uuid.uuid4().hex[:8]}"
    created = cli("create", project_id, "--origin", "https://cli.example")
    key = created["keys"]["server_key"]
    assert created["project"]["origins"] == ["https://cli.example"]
    assert project_id in {p["id"] for p in cli("list")["projects"]}
    wait_for(lambda: post(stack.collector_url, "/v1/track", track(), key).status_code == 200, timeout_s=5)
    assert cli("disable", project_id)["project"]["enabled"] is False
    wait_for(lambda: post(stack.collector_url, "/v1/track", track(), key).status_code == 403, timeout_s=5)
    failed = subprocess.run([sys.executable, "-m", "headwater", "project", "show", "missing"], env=stack.env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and "no project" in failed.stderr
