"""A lock per project database, so that migrations from several places at once (``headwater migrate``
on two hosts, the admin API creating a project while the indexer sees its first event) run one at a
time.

ClickHouse has no advisory locks, but creating a table is atomic: of two ``CREATE TABLE`` of one name,
one succeeds and the other fails with TABLE_ALREADY_EXISTS. The lock is the table
``{db}.schema_migrations_lock``, holding who took it; its age is the table's (``system.tables``), so
even a holder that died before writing its name has one. Releasing drops it. A holder that died
leaves it behind: a lock older than ``stale_after_s`` is taken over (migrations are idempotent, so a
half-applied one is applied again safely).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator

from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

TABLE_ALREADY_EXISTS = 57
LOCK_TABLE = "schema_migrations_lock"


class LockTimeout(RuntimeError):
    """Another migration held the lock for longer than we were willing to wait."""


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def migration_lock(client: Client, db: str, wait_s: float = 300.0, stale_after_s: float = 900.0,
                   poll_s: float = 0.2) -> Iterator[None]:
    """Hold the database's migration lock for the ``with`` block; wait up to ``wait_s`` for it."""
    deadline = time.monotonic() + wait_s
    while not _try_lock(client, db):
        holder, age_s = _holder(client, db)
        if age_s is not None and age_s >= stale_after_s:
            client.execute(f"DROP TABLE IF EXISTS {db}.{LOCK_TABLE}")  # its holder died: take it over
            continue
        if time.monotonic() > deadline:
            raise LockTimeout(f"{db}: migrations locked by {holder or 'an unknown holder'} for {age_s or 0:.0f} s; "
                              f"if no migration runs, drop the table {db}.{LOCK_TABLE}")
        time.sleep(poll_s)
    try:
        yield
    finally:
        client.execute(f"DROP TABLE IF EXISTS {db}.{LOCK_TABLE}")


def _try_lock(client: Client, db: str) -> bool:
    try:
        client.execute(f"CREATE TABLE {db}.{LOCK_TABLE} (holder String) ENGINE = Log")
    except ServerException as exc:
        if exc.code == TABLE_ALREADY_EXISTS:
            return False
        raise
    client.execute(f"INSERT INTO {db}.{LOCK_TABLE} (holder) VALUES", [(holder_name(),)])
    return True


def _holder(client: Client, db: str) -> tuple[str | None, float | None]:
    """Who holds the lock (``None`` before its name is written) and its age; ``(None, None)`` once released."""
    ages = client.execute("SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables "
                          "WHERE database = %(db)s AND name = %(table)s", {"db": db, "table": LOCK_TABLE})
    if not ages:
        return None, None
    try:
        names = client.execute(f"SELECT holder FROM {db}.{LOCK_TABLE} LIMIT 1")
    except ServerException:  # released (dropped) between the two reads
        return None, None
    return (names[0][0] if names else None), float(ages[0][0])
