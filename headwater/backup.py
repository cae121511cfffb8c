"""Backups of what a deployment cannot rebuild, and their restore.

A backup is a directory:

- ``registry/<topic>.jsonl``: the project registry, which lives only in compacted topics: every
  project (keys, origins, flow, privacy policy, schemas, sealed HMAC keys) and the sealed daily
  salts of cookieless ids. Each line is one record as stored (key and value, base64), so restoring
  needs the same ``secret_key`` that sealed them.
- ``clickhouse/<database>``: each project's database, written by ClickHouse's own ``BACKUP
  DATABASE … TO File(…)``. The directory must be one the ClickHouse server sees at the same path
  (the same host, or a shared mount) and allows in its ``backups.allowed_path``.
- ``manifest.json``: when, by which version, and what it holds.

Not in a backup: the pipeline's topics (events in flight are acknowledged and stored, or replayed
from the client's retry) and the sessionizer's open sessions (they start again after a restore).

Restore writes the registry records back and restores each database with ``RESTORE DATABASE``,
into a deployment that holds none of them yet: a project's record that exists already, or a
database with rows, is refused unless forced (a fresh deployment's own default project and empty
tables are fine). Then it applies any newer migrations. Start the roles after it has finished, so
that they load the restored registry.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

from aiokafka import AIOKafkaProducer
from clickhouse_driver import Client

from headwater.clickhouse import project_database
from headwater.kafka import kafka_connection
from headwater.migrations import migrate_project
from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import projects_topic, salts_topic

FORMAT = 1
RESTORED_PARTITION = 65535  # the largest kafka_partition (UInt16): no topic of Headwater's has it
SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")  # it goes into a ClickHouse string literal


class BackupError(RuntimeError):
    """The backup cannot be made or restored; the message says why."""


@dataclasses.dataclass
class Report:
    directory: str
    projects: list[str]
    registry_records: dict[str, int]
    databases: dict[str, str]  # database -> ClickHouse's status of its BACKUP or RESTORE


def registry_topics(settings: Settings) -> list[str]:
    return [projects_topic(settings), salts_topic(settings)]


async def read_registry(settings: Settings, topic: str) -> dict[str, bytes]:
    """The topic's current records: the latest value of every key that is not deleted."""
    records: dict[str, bytes] = {}

    def keep(key: str, value: bytes | None) -> None:
        if value is None:
            records.pop(key, None)
        else:
            records[key] = value

    tail = TopicTail(settings, topic, keep)
    await tail.start()
    await tail.stop()
    return records


def _directory(path: Path) -> Path:
    path = path.resolve()
    if not SAFE_PATH.match(str(path)):
        raise BackupError(f"{path}: a backup path may hold only letters, digits, '_', '.', '/' and '-'")
    return path


def backup(settings: Settings, client: Client, target: Path) -> Report:
    """Write a backup of every project into ``target``, which must not exist yet."""
    target = _directory(target)
    if target.exists():
        raise BackupError(f"{target} exists: a backup goes into a new directory")
    registry = {topic: asyncio.run(read_registry(settings, topic)) for topic in registry_topics(settings)}
    projects = sorted(registry[projects_topic(settings)])
    (target / "registry").mkdir(parents=True)
    for topic, records in registry.items():
        lines = (json.dumps({"key": key, "value": base64.b64encode(value).decode()}) for key, value in records.items())
        (target / "registry" / f"{topic}.jsonl").write_text("".join(f"{line}\n" for line in lines))
    databases = {}
    for project in projects:
        db = project_database(project)
        if client.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db})[0][0]:
            (_, status), = client.execute(f"BACKUP DATABASE {db} TO File('{target}/clickhouse/{db}')")
            databases[db] = str(status)
    report = Report(str(target), projects, {t: len(r) for t, r in registry.items()}, databases)
    manifest = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(), **dataclasses.asdict(report)}
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return report


def restore(settings: Settings, client: Client, source: Path, force: bool = False) -> Report:
    """Restore the backup in ``source`` into this deployment (see the module for what and in which order)."""
    source = _directory(source)
    try:
        manifest = json.loads((source / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source}: not a Headwater backup ({exc})") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    counts = asyncio.run(_restore_registry(settings, source, force))
    databases = {}
    for project in manifest["projects"]:
        db = project_database(project)
        if db in manifest["databases"]:
            databases[db] = _restore_database(client, db, source, force)
        migrate_project(client, project)
    return Report(str(source), manifest["projects"], counts, databases)


def _restore_database(client: Client, db: str, source: Path, force: bool) -> str:
    """RESTORE the database; into tables that exist only when they are empty (a fresh deployment's
    migrations made them), or with ``force``."""
    rows = client.execute("SELECT count(), sumIf(total_rows, name NOT LIKE 'schema_migrations%%') "
                          "FROM system.tables WHERE database = %(db)s", {"db": db})  # migrations' records aside
    tables, stored = rows[0][0], rows[0][1] or 0
    if stored and not force:
        raise BackupError(f"{db} already holds {stored} rows: restore into an empty deployment, or --force to add "
                          "the backup's rows to them")
    settings = " SETTINGS allow_non_empty_tables = 1" if tables else ""
    (_, status), = client.execute(f"RESTORE DATABASE {db} FROM File('{source}/clickhouse/{db}'){settings}")
    _retire_lineage(client, db)
    return str(status)


def _retire_lineage(client: Client, db: str) -> None:
    """The restored rows name partitions and offsets of the Kafka they came through, which this
    deployment's topics reuse from 0: the indexers, which skip records whose offset a table already
    holds (their exactly-once), would take new events for replays. The rows get a partition no topic
    has (``RESTORED_PARTITION``), so their lineage can never match a record again."""
    tables = [table for (table,) in client.execute(
        "SELECT table FROM system.columns WHERE database = %(db)s AND name = 'kafka_partition'", {"db": db})]
    for table in tables:
        client.execute(f"ALTER TABLE {db}.{table} UPDATE kafka_partition = {RESTORED_PARTITION} WHERE 1 "
                       "SETTINGS mutations_sync = 2")


async def _restore_registry(settings: Settings, source: Path, force: bool) -> dict[str, int]:
    counts = {}
    producer = AIOKafkaProducer(**kafka_connection(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for topic in registry_topics(settings):
            lines = (source / "registry" / f"{topic}.jsonl").read_text().splitlines()
            existing = await read_registry(settings, topic)  # a fresh local stack's default project may be replaced
            clashes = sorted({json.loads(line)["key"] for line in lines} & set(existing) - {settings.default_project})
            if clashes and not force:
                raise BackupError(f"{topic} already holds {', '.join(clashes[:5])}: restore into an empty "
                                  "deployment, or --force to write the backup's records over them")
            for line in lines:
                record = json.loads(line)
                await producer.send_and_wait(topic, base64.b64decode(record["value"]), key=record["key"].encode())
            counts[topic] = len(lines)
    finally:
        await producer.stop()
    return counts
