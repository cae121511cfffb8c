"""Test session set-up: one real Kafka broker and one real ClickHouse server for the whole session.

They listen on their own ports and keep their data under .local/test, so `make test` runs beside a
`make up`. Tests that need them live in ``tests/integration`` and carry the ``integration`` marker;
those in ``tests/unit`` need no server and never start one. Collection fails when a test breaks that
rule, so ``pytest tests/unit`` (or ``-m "not integration"``) is always server-free.
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
    "HEADWATER_STEP_COUNTS_FLUSH_S": "1",
    "HEADWATER_LOG_FORMAT": "json",
    "HEADWATER_HTTP_HEADER_TIMEOUT_S": "2",
    "HEADWATER_HTTP_BODY_TIMEOUT_S": "3",
    "HEADWATER_SECRET_KEY": "test-secret-key-of-at-least-32-characters",
    # the destination tests' receivers listen on loopback; retries wait at most 2 s
    "HEADWATER_FORWARD_PRIVATE_NETWORKS": "true",
    "HEADWATER_FORWARD_MAX_BACKOFF_S": "2",
    "HEADWATER_FORWARD_LOCAL_DIR": str(Path(".local/test-lakes").resolve()),
    # the email destination sends to the tests' SMTP server (tests.receivers.Mailbox); threshold windows
    # close 2 s after their end, and by the clock after 5 s without events; cohorts are read every second
    "HEADWATER_SMTP_HOST": "127.0.0.1",
    "HEADWATER_SMTP_PORT": "19025",
    "HEADWATER_SMTP_SECURITY": "none",
    "HEADWATER_SMTP_FROM": "alerts@headwater.test",
    "HEADWATER_ALERTS_GRACE_S": "2",
    "HEADWATER_ALERTS_IDLE_S": "5",
    "HEADWATER_ALERTS_COHORT_REFRESH_S": "1",
    # Schemathesis sends the Stats API thousands of requests; its rate limit is tested on an app of its own
    "HEADWATER_STATS_API_REQUESTS_PER_MINUTE": "1000000",
    "HEADWATER_STATS_API_BURST": "100000",
    "HEADWATER_STATS_API_CONCURRENT_REQUESTS": "100",
}
os.environ.update(TEST_ENV)

from tests.geoip import build_city_database  # noqa: E402

os.environ["HEADWATER_GEOIP_PATH"] = str(build_city_database(Path(".local/test-geoip/city.mmdb")).resolve())
os.environ["HEADWATER_TRANSFORMS_DIR"] = str(Path(__file__).parent.joinpath("transforms").resolve())

from devstack.s3 import S3Server  # noqa: E402
from devstack.stack import Stack  # noqa: E402
from headwater.clickhouse import make_client  # noqa: E402
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


def running(server):
    """A server started for the fixture's scope, and stopped after it: any of devstack's or tests.receivers'."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server(stack):
    """The S3-compatible server the lake destination writes to, with a bucket ``lake``."""
    for server in running(S3Server(stack.settings.local_path / "s3", 19070)):
        (server.root / "lake").mkdir(exist_ok=True)  # a bucket is a directory of the POSIX backend
        yield server


@pytest.fixture(scope="session")
def postgres(stack):
    """A real PostgreSQL (Debian's package), a cluster of the session's own, for the import tests."""
    from devstack.postgres import PostgresServer

    yield from running(PostgresServer(stack.settings.local_path / "postgres", 19432))


@pytest.fixture(scope="session")
def mysql(stack):
    """A real MySQL-compatible server (Debian's MariaDB), of the session's own, for the import tests."""
    from devstack.mysql import MySQLServer

    yield from running(MySQLServer(stack.settings.local_path / "mysql", 19306))


@pytest.fixture
def receiver():
    """A real webhook receiver on a loopback port (tests.receivers.Receiver), for one test."""
    from tests.receivers import Receiver

    yield from running(Receiver())


@pytest.fixture(scope="session")
def mailbox(stack):
    """A real SMTP server (aiosmtpd) where the email destination's messages arrive."""
    from tests.receivers import Mailbox

    yield from running(Mailbox(int(stack.settings.smtp_port)))


SERVER_FIXTURES = {"stack", "clickhouse", "s3_server", "mailbox", "postgres", "mysql"}


def pytest_collection_modifyitems(config, items):
    """Refuse a test in tests/integration without the integration marker, and one elsewhere that has
    the marker or asks for the real servers."""
    misplaced = []
    for item in items:
        integration = "integration" in item.path.relative_to(config.rootpath).parts[:2]
        marked = item.get_closest_marker("integration") is not None
        needs_servers = bool(SERVER_FIXTURES & set(item.fixturenames))
        if integration != marked or (needs_servers and not integration):
            misplaced.append(item.nodeid)
    if misplaced:
        raise pytest.UsageError("tests/integration holds exactly the tests marked integration, and only they "
                                "use the servers:\n  " + "\n  ".join(misplaced))


def pytest_terminal_summary(terminalreporter):
    """How many cases each fuzzing property ran (tests/fuzz_cases.py)."""
    from tests.fuzz_cases import CASES

    if CASES:
        terminalreporter.section("fuzzing: cases run")
        for name, count in CASES.items():
            terminalreporter.write_line(f"{count:6d}  {name}")
        terminalreporter.write_line(f"{sum(CASES.values()):6d}  in all")
