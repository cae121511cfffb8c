"""Small helpers for the integration tests."""

from __future__ import annotations

import base64
import time

import httpx
import pytest


def basic_auth(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def post(url: str, path: str, body: dict, write_key: str | None, **kwargs) -> httpx.Response:
    headers = basic_auth(write_key) if write_key else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=10, **kwargs)


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
