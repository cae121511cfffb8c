"""The ClickHouse a query bench runs on: the one running (``make up``'s, say), or one started for the
bench and stopped after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from clickhouse_driver import Client

from devstack.stack import Stack
from headwater.clickhouse import make_client
from headwater.settings import Settings


@contextlib.contextmanager
def bench_clickhouse(settings: Settings) -> Iterator[Client]:
    """A client of the ClickHouse of ``settings``, started (ClickHouse only) when none answers."""
    stack = None
    client = make_client(settings)
    try:
        client.execute("SELECT 1")
    except Exception:  # nothing running: start ClickHouse only
        stack = Stack(settings)
        stack.restart("clickhouse")  # starts it and waits until it answers
        client = make_client(settings)
    try:
        yield client
    finally:
        client.disconnect()
        if stack is not None:
            stack.clickhouse.stop()
