"""Small helpers for the integration tests."""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import pytest


def basic_auth(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def post(url: str, path: str, body: dict | None, write_key: str | None, headers: dict | None = None,
         **kwargs) -> httpx.Response:
    all_headers = {**(basic_auth(write_key) if write_key else {}), **(headers or {})}
    return httpx.post(f"{url}{path}", json=body, headers=all_headers, timeout=15, **kwargs)


def wait_for(check, timeout_s: float = 30.0, interval_s: float = 0.25):
    """Call ``check`` until it returns something truthy; return that, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s (last result: {result!r})")
        time.sleep(interval_s)


def wait_for_equal(read, expected, timeout_s: float = 30.0, interval_s: float = 0.25):
    """Call ``read`` until it returns ``expected``; fail after ``timeout_s`` showing the last reading."""
    deadline = time.monotonic() + timeout_s
    while (seen := read()) != expected and time.monotonic() < deadline:
        time.sleep(interval_s)
    assert seen == expected


class Admin:
    """The admin API of the test stack."""

    def __init__(self, settings) -> None:
        self.url = f"http://{settings.admin_host}:{settings.admin_port}"
        self.headers = {"Authorization": f"Bearer {settings.admin_token}"}

    def call(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        return httpx.request(method, self.url + path, json=body, headers=self.headers, timeout=30)

    def create_project(self, origins: list[str] = (), prefix: str = "p") -> dict:
        project_id = f"{prefix}_{uuid.uuid4().hex[:8]}"
        reply = self.call("POST", "/v1/projects", {"id": project_id, "origins": list(origins)})
        assert reply.status_code == 201, reply.text
        return reply.json()


def count_rows(clickhouse, database: str, where: str = "1", params: dict | None = None) -> int:
    return clickhouse.execute(f"SELECT count() FROM {database}.events WHERE {where}", params or {})[0][0]


def dashboard_session(dashboard_url: str, token: str) -> dict[str, str]:
    """The cookies of a browser logged in to the dashboard with ``token`` (through its login form)."""
    reply = httpx.post(f"{dashboard_url}/login", data={"token": token, "next": "/"},
                       headers={"Origin": dashboard_url}, follow_redirects=False, timeout=15)
    assert reply.status_code == 303, reply.text
    return dict(reply.cookies)
