"""Test session set-up: one real Kafka broker and one real ClickHouse server for the whole session.

They listen on their own ports and keep their data under .local/test, so `make test` runs beside a
`make up`. Unit tests that need no server don't request the ``stack`` fixture and never start one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TEST_ENV = {
    "HEADWATER_KAFKA_BOOTSTRAP": "127.0.0.1:19092",
    "HEADWATER_KAFKA_CONTROLLER_PORT": "19093",
    "HEADWATER_CLICKHOUSE_PORT": "19000",
    "HEADWATER_CLICKHOUSE_HTTP_PORT": "18123",
    "HEADWATER_COLLECTOR_PORT": "18080",
    "HEADWATER_ADMIN_PORT": "18081",
    "HEADWATER_DASHBOARD_PORT": "18082",
    "HEADWATER_LOCAL_METRICS_PORT": "19400",
    "HEADWATER_ADMIN_TOKEN": "test-admin-token",
    "HEADWATER_PRODUCE_TIMEOUT_S": "3",
    "HEADWATER_LOCAL_DIR": ".local/test",
    "HEADWATER_INDEXER_BATCH_MS": "300",
    "HEADWATER_SESSION_ROW_INTERVAL_S": "1",
    "HEADWATER_LOG_FORMAT": "json",
    "HEADWATER_HTTP_HEADER_TIMEOUT_S": "2",
    "HEADWATER_HTTP_BODY_TIMEOUT_S": "3",
    "HEADWATER_SECRET_KEY": "test-secret-key-of-at-least-32-characters",
}
os.environ.update(TEST_ENV)

from tests.geoip import build_city_database  # noqa: E402

os.environ["HEADWATER_GEOIP_PATH"] = str(build_city_database(Path(".local/test-geoip/city.mmdb")).resolve())

from headwater.clickhouse import make_client  # noqa: E402
from headwater.devstack.stack import Stack  # noqa: E402
from headwater.settings import get_settings  # noqa: E402


@pytest.fixture(scope="session")
def settings():
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings):
    shutil.rmtree(Path(settings.local_dir), ignore_errors=True)
    with Stack(settings) as running:
        yield running


@pytest.fixture(scope="session")
def clickhouse(stack):
    client = make_client(stack.settings)
    yield client
    client.disconnect()



def pytest_terminal_summary(terminalreporter):
    """How many cases each fuzzing property ran (tests/test_fuzz_parsers.py)."""
    from tests import test_fuzz_parsers

    if test_fuzz_parsers.CASES:
        terminalreporter.section("fuzzing: cases run")
        for name, count in test_fuzz_parsers.CASES.items():
            terminalreporter.write_line(f"{count:6d}  {name}")
        terminalreporter.write_line(f"{sum(test_fuzz_parsers.CASES.values()):6d}  in all")
