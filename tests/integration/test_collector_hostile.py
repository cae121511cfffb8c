"""What one sender holding a project's public write key can do to everyone else, against the real
stack: event times that scatter partitions, huge invalid batches, slow and idle connections, forged
forwarding headers, input that must never answer 500, and what real browser SDKs send."""

from __future__ import annotations

import json
import socket
import time
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.fuzz_cases import counted
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(stack):
    return Admin(stack.settings).create_project(origins=["https://shop.example"], prefix="hostile")


@pytest.fixture(scope="module")
def key(project):
    return project["keys"]["public_key"]


@pytest.fixture(scope="module")
def database(project):
    return project["project"]["database"]


def event(**extra) -> dict:
    return {"type": "track", "event": "Hostile", "anonymousId": "h1", "messageId": str(uuid.uuid4()), **extra}


def stored(clickhouse, database: str, message_id: str, columns: str):
    rows = clickhouse.execute(f"SELECT {columns} FROM {database}.events WHERE message_id = %(m)s", {"m": message_id})
    return rows[0] if rows else None


def test_a_time_far_in_the_future_is_stored_as_the_receive_time(stack, key, database, clickhouse):
    far = event(timestamp="9999-12-31T00:00:00Z")
    assert post(stack.collector_url, "/v1/track", far, key).status_code == 200
    row = wait_for(lambda: stored(clickhouse, database, far["messageId"], "timestamp, received_at"))
    assert row[0] == row[1]


def test_a_time_too_old_is_refused_with_its_reason(stack, key):
    reply = post(stack.collector_url, "/v1/track", event(timestamp="1900-01-01T00:00:00Z"), key)
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["reason"] == "too_old"


def test_a_batch_over_a_hundred_months_cannot_stall_loading(stack, key, database, clickhouse):
    months = [event(timestamp=f"{2024 + m // 12}-{m % 12 + 1:02d}-15T00:00:00Z") for m in range(101)]
    reply = post(stack.collector_url, "/v1/batch", {"batch": months}, key)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["rejected"] > 0 and {e["reason"] for e in answer["errors"]} == {"too_old"}
    later = event()
    assert post(stack.collector_url, "/v1/track", later, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, database, "message_id = %(m)s", {"m": later["messageId"]}) == 1)
    ids = [e["messageId"] for e in months]
    assert count_rows(clickhouse, database, "message_id IN %(ids)s", {"ids": ids}) == answer["accepted"]
    months_stored = clickhouse.execute(f"SELECT uniqExact(toYYYYMM(timestamp)) FROM {database}.events "
                                       "WHERE message_id IN %(ids)s", {"ids": ids})[0][0]
    assert months_stored <= 26


def test_a_sent_at_far_from_the_timestamp_is_not_a_500(stack, key, database, clickhouse):
    skewed = event(timestamp="2026-01-01T00:00:00Z", sentAt="9999-12-31T23:59:59Z")
    assert post(stack.collector_url, "/v1/track", skewed, key).status_code == 200
    backwards = event(sentAt="0001-01-01T00:00:00Z")
    assert post(stack.collector_url, "/v1/track", backwards, key).status_code == 200


def test_a_huge_invalid_batch_is_refused_at_once_with_a_small_answer(stack, key):
    body = '{"batch":[' + ",".join(["{}"] * 100_000) + "]}"
    started = time.monotonic()
    reply = httpx.post(stack.collector_url + "/v1/batch", content=body, auth=(key, ""), timeout=30)
    assert reply.status_code == 400 and reply.json()["reason"] == "too_many_events"
    assert time.monotonic() - started < 2 and len(reply.content) < 1000


def test_the_errors_of_a_large_invalid_batch_are_bounded(stack, key, settings):
    body = {"batch": [{} for _ in range(settings.max_batch_events)]}
    reply = post(stack.collector_url, "/v1/batch", body, key)
    assert reply.status_code == 400
    answer = reply.json()
    assert answer["error_count"] == settings.max_batch_events
    assert len(answer["errors"]) == 20 and len(reply.content) < 5000


def test_a_deeply_nested_batch_item_without_type_is_a_400(stack, key):
    nested: dict = {"anonymousId": "a"}
    inner = nested
    for _ in range(300):
        inner["p"] = {}
        inner = inner["p"]
    reply = post(stack.collector_url, "/v1/batch", {"batch": [nested]}, key)
    assert reply.status_code == 400, reply.text
    assert reply.json()["errors"][0]["reason"] == "too_deep"


def test_an_empty_user_id_means_none(stack, key, database, clickhouse):
    """RudderStack's browser SDK sends "userId": "" before identify, single and batched."""
    single = event(userId="")
    batched = {**event(userId=""), "type": "page", "anonymousId": "rs-anon"}
    assert post(stack.collector_url, "/v1/track", single, key).status_code == 200
    reply = post(stack.collector_url, "/v1/batch", {"batch": [batched]}, key)
    assert reply.status_code == 200 and "rejected" not in reply.json()
    ids = [single["messageId"], batched["messageId"]]
    wait_for(lambda: count_rows(clickhouse, database, "message_id IN %(ids)s AND user_id = ''", {"ids": ids}) == 2)


@pytest.mark.parametrize("case", ["malformed", "invalid", "too_large", "too_many"])
def test_error_answers_to_an_allowed_origin_carry_cors_headers(stack, key, case):
    origin = "https://shop.example"
    headers = {"Origin": origin}
    if case == "malformed":  # refused before the body names its project: the Basic key does
        reply = httpx.post(stack.collector_url + "/v1/track", content=b"{nope", auth=(key, ""), headers=headers)
    elif case == "invalid":
        reply = post(stack.collector_url, "/v1/track", {"anonymousId": "x"}, key, headers)
    elif case == "too_large":
        reply = post(stack.collector_url, "/v1/track", event(properties={"x": "y" * 40_000}), key, headers)
    else:
        reply = post(stack.collector_url, "/v1/batch", {"batch": [event()] * 2_001}, key, headers)
    assert 400 <= reply.status_code < 500, reply.text
    assert reply.headers["access-control-allow-origin"] == origin


def test_error_answers_to_other_origins_carry_none(stack, key):
    reply = post(stack.collector_url, "/v1/track", {"anonymousId": "x"}, key, {"Origin": "https://evil.example"})
    assert reply.status_code == 403 and "access-control-allow-origin" not in reply.headers


def test_forwarding_headers_from_loopback_are_ignored_without_trusted_proxies(stack, settings, database,
                                                                            clickhouse, key):
    assert settings.trusted_proxies == ""
    forged = event()
    headers = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    assert post(stack.collector_url, "/v1/track", forged, key, headers).status_code == 200
    row = wait_for(lambda: stored(clickhouse, database, forged["messageId"], "ip"))
    assert row[0] == "127.0.0.0"  # the peer's address, truncated by the default IP policy


def closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_idle_and_slow_connections_are_closed_and_do_not_block_others(stack, settings):
    host, port = settings.collector_host, settings.collector_port
    idle = [socket.create_connection((host, port)) for _ in range(200)]
    slow = socket.create_connection((host, port))
    slow.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    assert httpx.get(stack.collector_url + "/healthz", timeout=5).status_code == 200
    for _ in range(3):  # a header line a second: never finishes its headers
        time.sleep(1)
        try:
            slow.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    assert closed_within(slow, settings.http_header_timeout_s + 2)
    assert all(closed_within(s, 1) for s in idle)
    assert time.monotonic() - started < settings.http_header_timeout_s + 5
    for s in [*idle, slow]:
        s.close()


def test_a_body_that_never_arrives_is_cut_off(stack, settings, key):
    sock = socket.create_connection((settings.collector_host, settings.collector_port))
    sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"event\":")
    assert closed_within(sock, settings.http_body_timeout_s + 2)
    sock.close()


def test_a_client_that_disconnects_is_not_an_error(stack, settings):
    sock = socket.create_connection((settings.collector_host, settings.collector_port))
    sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":")
    time.sleep(0.3)
    sock.close()
    time.sleep(0.5)
    log = (settings.local_path / "logs" / "collector.log").read_text(errors="replace")
    assert "unhandled_error" not in log
    assert any(json.loads(line).get("event") == "client_disconnected"
               for line in log.splitlines() if line.startswith("{"))


@pytest.mark.parametrize("body", [{"id": "shop\n"}, {"id": "shop", "origins": "https://x.example"},
                                  {"id": "shop", "colour": "red"}, {"id": 5}])
def test_bad_project_definitions_are_400s(stack, body):
    reply = Admin(stack.settings).call("POST", "/v1/projects", body)
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("grace", [True, 1e300, -1, "60"])
def test_rotate_keys_takes_only_a_number_of_seconds_up_to_a_year(stack, project, grace):
    reply = Admin(stack.settings).call("POST", f"/v1/projects/{project['project']['id']}/rotate-keys",
                                       {"grace_seconds": grace})
    assert reply.status_code == 400 and "grace_seconds" in reply.json()["message"]


def test_rotate_keys_with_an_overflowing_number_is_a_400(stack, project):
    reply = httpx.post(Admin(stack.settings).url + f"/v1/projects/{project['project']['id']}/rotate-keys",
                       content=b'{"grace_seconds": 1e999}', headers=Admin(stack.settings).headers)
    assert reply.status_code == 400


ADMIN_ROUTES = [("PUT", "origins"), ("POST", "rotate-keys"), ("PATCH", "config"), ("POST", "schemas"),
                ("POST", "disable"), ("POST", "enable"), ("POST", "alerts/no-such-rule/test")]
JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=12)
BODY_FIELDS = st.sampled_from(["origins", "grace_seconds", "flow", "privacy", "enrich", "validation", "sessions",
                               "event", "version", "schema", "retention_days", "id", "name", "alerts",
                               "destinations", "identity", "cohorts"])


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ADMIN_ROUTES), body=st.one_of(JSON, st.dictionaries(BODY_FIELDS, JSON, max_size=3)))
def test_no_admin_api_body_is_a_5xx(stack, route, body):
    """The admin API, like every public endpoint, answers bad input with a 4xx and its reason."""
    counted("admin API bodies")
    method, action = route
    admin = Admin(stack.settings)
    reply = admin.call(method, f"/v1/projects/{_fuzzed_project(admin)}/{action}", body)
    assert reply.status_code < 500, (route, body, reply.text[-300:])


_FUZZED: dict = {}


def _fuzzed_project(admin: Admin) -> str:
    if "id" not in _FUZZED:
        _FUZZED["id"] = admin.create_project(prefix="fuzzed")["project"]["id"]
    return _FUZZED["id"]
