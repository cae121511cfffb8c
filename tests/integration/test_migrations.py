"""Migrations against ClickHouse: a project's database is created with its tables when the project is
created, `headwater migrate` brings every project up to date and running it again changes nothing, and
a database made by the earlier layout gets the columns the indexer and the queries need."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime

import pytest

from headwater.migrations import all_migrations, migrate_project
from tests.helpers import Admin

pytestmark = pytest.mark.integration


def tables(clickhouse, db: str) -> set[str]:
    return {row[0] for row in clickhouse.execute(f"SHOW TABLES FROM {db}")}


def columns(clickhouse, db: str, table: str) -> set[str]:
    return {row[0] for row in clickhouse.execute(f"DESCRIBE TABLE {db}.{table}")}


def test_creating_a_project_creates_its_database(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    db = created["project"]["database"]
    assert {"events", "sessions", "failed_events", "step_counts", "schema_migrations"} <= tables(clickhouse, db)
    applied = [row[0] for row in clickhouse.execute(f"SELECT version FROM {db}.schema_migrations ORDER BY version")]
    assert applied == [m.version for m in all_migrations()]


def test_migrate_reaches_every_project_and_is_idempotent(stack, settings, clickhouse):
    admin = Admin(settings)
    projects = [admin.create_project()["project"] for _ in range(2)]
    for project in projects:  # as if they were created before the last migrations existed
        clickhouse.execute(f"ALTER TABLE {project['database']}.schema_migrations DELETE WHERE version >= 3",
                           settings={"mutations_sync": 2})
    first = subprocess.run([sys.executable, "-m", "headwater", "migrate"], capture_output=True, text=True, check=True)
    for project in projects:
        assert f"{project['id']}: applied {[m.version for m in all_migrations() if m.version >= 3]}" in first.stdout
    again = subprocess.run([sys.executable, "-m", "headwater", "migrate"], capture_output=True, text=True, check=True)
    for project in projects:
        assert f"{project['id']}: applied nothing, up to date" in again.stdout


def test_an_old_layout_gets_the_new_columns(clickhouse):
    """A database migrated (1–3) by the earlier layout: MergeTree events without visitor_hash, sessions
    and failed_events without their Kafka positions."""
    project = f"old_{uuid.uuid4().hex[:8]}"
    db = f"hw_{project}"
    clickhouse.execute(f"CREATE DATABASE {db}")
    clickhouse.execute(f"CREATE TABLE {db}.schema_migrations (version UInt32, name String, applied_at DateTime "
                       "DEFAULT now()) ENGINE = MergeTree ORDER BY version")
    clickhouse.execute(f"INSERT INTO {db}.schema_migrations (version, name) VALUES",
                       [(1, "events"), (2, "enrichment_and_failed_events"), (3, "sessions")])
    clickhouse.execute(f"CREATE TABLE {db}.events (project_id String, message_id String, event String, "
                       "anonymous_id String, user_id String, timestamp DateTime64(3, 'UTC'), kafka_partition UInt16, "
                       "kafka_offset UInt64) ENGINE = MergeTree ORDER BY (toDate(timestamp), event, "
                       "cityHash64(anonymous_id), timestamp)")
    clickhouse.execute(f"CREATE TABLE {db}.sessions (session_id String, visitor_id String, start_at DateTime64(3, 'UTC'), "
                       "end_at DateTime64(3, 'UTC'), duration_s UInt32, os String, sign Int8, version UInt32) "
                       "ENGINE = VersionedCollapsingMergeTree(sign, version) ORDER BY session_id")
    clickhouse.execute(f"INSERT INTO {db}.sessions (session_id, visitor_id, start_at, end_at, duration_s, sign, version) "
                       "VALUES", [("s1", "a1", datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10, 2, 3, 450_000), 123,
                                   1, 1)])
    clickhouse.execute(f"CREATE TABLE {db}.failed_events (reason String, payload String) "
                       "ENGINE = MergeTree ORDER BY reason")
    clickhouse.execute(f"INSERT INTO {db}.events (message_id, anonymous_id, user_id) VALUES",
                       [("m1", "a1", ""), ("m2", "", "u2")])
    assert migrate_project(clickhouse, project) == [m.version for m in all_migrations() if m.version >= 4]
    assert "visitor_hash" in columns(clickhouse, db, "events")
    assert {"kafka_partition", "kafka_offset", "visitor_hash"} <= columns(clickhouse, db, "sessions")
    assert clickhouse.execute(f"SELECT compression_codec FROM system.columns WHERE database = '{db}' "
                              "AND table = 'events' AND name = 'timestamp'") == [("CODEC(LZ4)",)]
    assert {"kafka_partition", "kafka_offset"} <= columns(clickhouse, db, "failed_events")
    assert "merge_selector_base = 10" in clickhouse.execute(f"SHOW CREATE TABLE {db}.events")[0][0]
    hashes = clickhouse.execute(f"SELECT visitor_hash = cityHash64(if(anonymous_id != '', anonymous_id, user_id)) "
                                f"FROM {db}.events")
    assert hashes == [(1,), (1,)]
    assert clickhouse.execute(f"SELECT duration_ms, is_bot FROM {db}.sessions") == [(123_450, False)]
    assert {"previous_id", "group_id", "group_traits", "transforms"} <= columns(clickhouse, db, "events")
    # the catalogue's view works on the old layout too: a new row lands in it
    clickhouse.execute(f"INSERT INTO {db}.events (message_id, event, type, timestamp, properties) VALUES",
                       [("m3", "Signed Up", "track", datetime(2026, 1, 2), '{"plan": "pro"}')])
    assert clickhouse.execute(f"SELECT property, value_type, sum(events) FROM {db}.event_catalogue "
                              "GROUP BY property, value_type ORDER BY property") == [("", "", 1), ("plan", "string", 1)]
    assert migrate_project(clickhouse, project) == []


def test_migrations_run_from_two_places_at_once_apply_each_version_once(stack, settings, clickhouse):
    import threading

    from headwater.clickhouse import make_client, project_database

    project = f"lock_{uuid.uuid4().hex[:8]}"
    db, start, results = project_database(project), threading.Barrier(2), {}

    def migrate(name: str) -> None:
        client = make_client(settings)
        try:
            start.wait()
            results[name] = migrate_project(client, project)
        finally:
            client.disconnect()

    runs = [threading.Thread(target=migrate, args=(name,)) for name in ("first", "second")]
    for run in runs:
        run.start()
    for run in runs:
        run.join(120)
    versions = [m.version for m in all_migrations()]
    assert sorted(results["first"] + results["second"]) == versions  # one run applied them, the other none
    recorded = clickhouse.execute(f"SELECT version, count() FROM {db}.schema_migrations GROUP BY version ORDER BY version")
    assert recorded == [(version, 1) for version in versions]
    assert "schema_migrations_lock" not in tables(clickhouse, db)


def test_a_held_lock_makes_others_wait_and_a_dead_holders_lock_is_taken_over(stack, settings, clickhouse):
    from headwater.clickhouse import project_database
    from headwater.migrations.lock import LockTimeout, migration_lock

    db = project_database(f"lock_{uuid.uuid4().hex[:8]}")
    clickhouse.execute(f"CREATE DATABASE {db}")
    clickhouse.execute(f"CREATE TABLE {db}.schema_migrations_lock (holder String) ENGINE = Log")
    clickhouse.execute(f"INSERT INTO {db}.schema_migrations_lock VALUES", [("other-host:4242",)])
    with pytest.raises(LockTimeout, match="locked by other-host:4242"):
        with migration_lock(clickhouse, db, wait_s=1.0):
            pass
    with migration_lock(clickhouse, db, stale_after_s=0.0):  # its holder is presumed dead: taken over
        assert clickhouse.execute(f"SELECT holder FROM {db}.schema_migrations_lock")[0][0] != "other-host:4242"
    assert "schema_migrations_lock" not in tables(clickhouse, db)
