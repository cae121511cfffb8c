"""Versioned, idempotent ClickHouse migrations, applied per project database.

Each migration is a file ``NNNN_name.sql`` in this package; ``{db}`` stands for the project's database.
Statements are separated by a line holding only ``;;``. Every statement must be safe to run twice
(``IF NOT EXISTS`` and the like): a crash between running a migration and recording it is harmless.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from clickhouse_driver import Client

from headwater.clickhouse import project_database
from headwater.migrations.lock import migration_lock


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self, db: str) -> list[str]:
        return [part.strip().format(db=db) for part in self.sql.split("\n;;\n") if part.strip()]


def all_migrations() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append(Migration(int(version), name, entry.read_text()))
    return sorted(found, key=lambda m: m.version)


RETENTION_COLUMNS = {"events": "timestamp", "sessions": "start_at", "event_catalogue": "day"}


def apply_retention(client: Client, project_id: str, days: int | None) -> None:
    """Set (or remove, for ``None``) the TTL that drops a project's old events, sessions and catalogue days. Rows are
    removed when ClickHouse merges the parts that hold them."""
    db = project_database(project_id)
    with_ttl = {name for (name,) in client.execute(
        "SELECT name FROM system.tables WHERE database = %(db)s AND position(engine_full, ' TTL ') > 0", {"db": db})}
    for table, column in RETENTION_COLUMNS.items():
        if days is None:
            if table in with_ttl:  # ClickHouse refuses to remove a TTL a table does not have
                client.execute(f"ALTER TABLE {db}.{table} REMOVE TTL")
        else:
            client.execute(f"ALTER TABLE {db}.{table} MODIFY TTL toDateTime({column}) + INTERVAL {int(days)} DAY")


def migrate_project(client: Client, project_id: str) -> list[int]:
    """Create the project's database if needed and apply every pending migration; return their versions.
    Runs from several places at once take turns (:func:`headwater.migrations.lock.migration_lock`):
    the first applies what is pending, the others then find nothing to do."""
    db = project_database(project_id)
    client.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    with migration_lock(client, db):
        return _apply_pending(client, db)


def _apply_pending(client: Client, db: str) -> list[int]:
    client.execute(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = MergeTree ORDER BY version"
    )
    applied = {row[0] for row in client.execute(f"SELECT version FROM {db}.schema_migrations")}
    done = []
    for migration in all_migrations():
        if migration.version in applied:
            continue
        for statement in migration.statements(db):
            client.execute(statement)
        client.execute(
            f"INSERT INTO {db}.schema_migrations (version, name) VALUES",
            [(migration.version, migration.name)],
        )
        done.append(migration.version)
    return done
