"""Collector parts that need no server: client addresses, token buckets, the compact format, schema
errors, the OpenAPI document."""

from __future__ import annotations

import pytest

from collector.compact import Invalid, expand
from collector.errors import ApiError
from collector.network import ClientAddress
from collector.openapi import openapi_document
from collector.request import IngestRequest
from headwater.ratelimit import TokenBuckets, retry_after
from headwater.schemas import load_schema


def request(peer: str, headers: dict[str, str]) -> IngestRequest:
    return IngestRequest({k.lower(): v for k, v in headers.items()}, peer)


def test_forwarding_headers_are_ignored_without_trusted_proxies():
    addresses = ClientAddress("")
    assert addresses.of(request("203.0.113.9", {"X-Forwarded-For": "1.2.3.4"})) == "203.0.113.9"


def test_forwarded_for_from_a_trusted_proxy_takes_the_rightmost_untrusted_address():
    addresses = ClientAddress("10.0.0.0/8, 127.0.0.1/32")
    forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.2.3"}  # 6.6.6.6 was written by the client
    assert addresses.of(request("10.0.0.1", forwarded)) == "198.51.100.7"
    assert addresses.of(request("203.0.113.9", forwarded)) == "203.0.113.9"  # not a trusted peer


def test_real_ip_and_garbage_from_a_trusted_proxy():
    addresses = ClientAddress("127.0.0.1/32")
    assert addresses.of(request("127.0.0.1", {"X-Real-IP": "2001:db8::1"})) == "2001:db8::1"
    assert addresses.of(request("127.0.0.1", {"X-Forwarded-For": "not-an-ip"})) == "127.0.0.1"


def test_token_bucket_allows_the_burst_then_says_how_long_to_wait(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("headwater.ratelimit.time.monotonic", lambda: now[0])
    buckets = TokenBuckets(rate=2, burst=3)
    assert [buckets.take("ip") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("ip")
    assert wait == pytest.approx(0.5)
    assert retry_after(wait) == "1"
    now[0] += 0.5
    assert buckets.take("ip") == 0.0
    assert buckets.take("other") == 0.0  # buckets are per key


def test_token_bucket_off_when_rate_is_zero():
    buckets = TokenBuckets(rate=0, burst=0)
    assert all(buckets.take("x", 1000) == 0.0 for _ in range(100))


def test_compact_events_expand_to_segment_events():
    body = expand({"k": "key", "s": 1_000_000, "e": [
        {"t": "t", "n": "Clicked", "a": "anon", "p": {"x": 1}, "ts": 999_000, "m": "m1"},
        {"t": "p", "u": "user", "c": {"u": "https://a.example/p?q=1", "tz": "UTC"}},
        {"t": "t", "a": "anon"},
    ]})
    track, page, invalid = body["batch"]
    assert body["writeKey"] == "key"
    assert track["type"] == "track" and track["event"] == "Clicked" and track["messageId"] == "m1"
    assert track["timestamp"] == "1970-01-01T00:16:39.000Z" and track["sentAt"] == "1970-01-01T00:16:40.000Z"
    assert page["type"] == "page" and page["userId"] == "user"
    assert page["context"]["page"]["url"] == "https://a.example/p?q=1" and page["context"]["timezone"] == "UTC"
    assert isinstance(invalid, Invalid) and invalid.problems[0]["field"] == "n"


@pytest.mark.parametrize("body", [{"e": []}, {"e": [{}], "s": "soon"}, {"e": [{}], "k": 5}, {"e": [{}], "s": None}])
def test_compact_body_errors(body):
    with pytest.raises(ApiError) as error:
        expand(body)
    assert error.value.status == 400 and error.value.errors


def test_schema_errors_name_fields():
    schema = load_schema("headwater", "segment_event", "1-0-0")
    errors = schema.errors({"type": "group", "userId": None, "groupId": None, "context": 3})
    fields = {e["field"] for e in errors}
    assert {"anonymousId", "groupId", "context"} <= fields


def test_openapi_document_lists_every_ingest_path():
    paths = openapi_document()["paths"]
    for path in ["/v1/track", "/v1/t", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias",
                 "/v1/batch", "/v1/b", "/v1/hw", "/healthz", "/readyz"]:
        assert path in paths
    assert set(paths["/v1/track"]["post"]["responses"]) == {"200", "400", "401", "403", "413", "415", "429", "503"}


def test_the_access_log_is_off_unless_asked_for():
    from headwater.settings import load_settings

    assert load_settings({}).access_log is False
    assert load_settings({"HEADWATER_ACCESS_LOG": "true"}).access_log is True


def test_in_flight_refuses_a_keys_request_past_its_limit_until_one_leaves():
    from headwater.ratelimit import InFlight

    gate = InFlight(2)
    assert gate.enter("a") and gate.enter("a") and not gate.enter("a")
    assert gate.enter("b")  # another key, its own count
    gate.leave("a")
    assert gate.enter("a") and not gate.enter("a")
    for _ in range(3):
        gate.leave("a")
    assert gate.counts == {"b": 1}
