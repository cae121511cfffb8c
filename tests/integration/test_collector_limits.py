"""Rate limits, on an in-process collector with tight limits, over the real Kafka of the test stack."""

from __future__ import annotations

import dataclasses

import pytest
from starlette.testclient import TestClient

from collector.app import create_app
from tests.helpers import basic_auth

pytestmark = pytest.mark.integration


def client_with(stack, **limits) -> TestClient:
    return TestClient(create_app(dataclasses.replace(stack.settings, **limits)))


def test_per_ip_limit_answers_429_with_retry_after(stack, settings):
    with client_with(stack, rate_limit_ip_rps=0.5, rate_limit_ip_burst=2) as client:
        body, headers = {"event": "x", "anonymousId": "a"}, basic_auth(settings.default_write_key)
        statuses = [client.post("/v1/track", json=body, headers=headers).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        limited = client.post("/v1/track", json=body, headers=headers)
        assert limited.json()["reason"] == "rate_limited"
        assert int(limited.headers["retry-after"]) >= 1


def test_per_project_limit_counts_events(stack, settings):
    with client_with(stack, rate_limit_project_eps=1, rate_limit_project_burst=5) as client:
        headers = basic_auth(settings.default_write_key)
        batch = {"batch": [{"type": "track", "event": "x", "anonymousId": f"a{i}"} for i in range(4)]}
        assert client.post("/v1/batch", json=batch, headers=headers).status_code == 200
        assert client.post("/v1/batch", json=batch, headers=headers).status_code == 429
