"""The indexer role: loads one target table (``events`` or ``failed_events``) of every project.

It batches by size (``indexer_batch_rows``) and by time (``indexer_batch_ms``), inserts each
project's rows with one native columnar INSERT, and commits Kafka offsets only after ClickHouse has
acknowledged every insert of the batch. A batch carries an ``insert_deduplication_token`` built from
its partition offset ranges, so the same batch inserted twice is stored once. When ClickHouse fails,
it retries the same batch with backoff and polls nothing new meanwhile. Each table is loaded by its
own consumer group.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import structlog
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_driver.errors import Error as ClickHouseError

from headwater.clickhouse import make_client, project_database
from headwater.deadletter import Rejected, dead_letter
from headwater.kafka import make_consumer, make_producer
from headwater.migrations import migrate_project
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from indexer.targets import Target, target

log = structlog.get_logger()
MAX_BACKOFF_S = 30.0
MAX_RECORDS_PER_POLL = 500


class Batch:
    """Rows waiting to be inserted, grouped by project, with the offsets they came from."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.started = time.monotonic()
        self.rows: dict[str, list[tuple]] = defaultdict(list)
        self.first: dict[TopicPartition, int] = {}
        self.next_offsets: dict[TopicPartition, int] = {}
        self.records = 0  # Kafka messages, each holding one or more rows
        self.events = 0
        self.rejected: list[tuple[ConsumerRecord, Rejected]] = []

    def add(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        self.first.setdefault(tp, record.offset)
        self.next_offsets[tp] = record.offset + 1
        self.records += 1
        try:
            rows = self.target.rows(record)
        except Rejected as error:
            self.rejected.append((record, error))
            return
        for project_id, row in rows:
            self.rows[project_id].append(row)
        self.events += len(rows)

    def token(self, project_id: str) -> str:
        ranges = sorted(f"{tp.topic}/{tp.partition}/{self.first[tp]}-{n}" for tp, n in self.next_offsets.items())
        return f"{self.target.table}|{project_id}|" + ",".join(ranges)

    def age_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000


class Indexer:
    def __init__(self, settings: Settings, table: str = "events") -> None:
        self.settings = settings
        self.store = ProjectStore(settings)
        self.target = target(table, settings, self.store)
        self.consumer = make_consumer(settings, [self.target.topic], self.target.group_id)
        self.producer = make_producer(settings)
        self.client = make_client(settings)
        self.migrated: set[str] = set()
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.producer.start()
        await self.store.start()
        await self.consumer.start()
        try:
            while not self.stopping.is_set():
                await self._flush(await self._fill())
        finally:
            await self.consumer.stop()
            await self.store.stop()
            await self.producer.stop()
            self.client.disconnect()

    async def _fill(self) -> Batch:
        batch = Batch(self.target)
        while batch.events < self.settings.indexer_batch_rows and not self.stopping.is_set():
            wait_ms = self.settings.indexer_batch_ms - batch.age_ms()
            if wait_ms <= 0:
                break
            polled = await self.consumer.getmany(timeout_ms=int(wait_ms), max_records=MAX_RECORDS_PER_POLL)
            for tp, records in polled.items():
                for record in records:
                    batch.add(tp, record)
        return batch

    async def _flush(self, batch: Batch) -> None:
        if not batch.records:
            return
        started = time.perf_counter()
        for project_id, rows in batch.rows.items():
            if not await self._insert_with_retry(project_id, rows, batch.token(project_id)):
                return  # stopping: leave the batch uncommitted, it is delivered again
        for record, error in batch.rejected:
            out = dead_letter(self.settings, record, error, "index")
            await self.producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
        try:
            await self.consumer.commit(batch.next_offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_failed", error=str(exc), note="the batch will be delivered again")
        log.info("batch", table=self.target.table, records=batch.records, rows=batch.events,
                 projects=len(batch.rows), dead_lettered=len(batch.rejected),
                 ms=round((time.perf_counter() - started) * 1000, 1))

    async def _insert_with_retry(self, project_id: str, rows: list[tuple], token: str) -> bool:
        """Insert until ClickHouse acknowledges (True) or the indexer is asked to stop (False)."""
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                await asyncio.to_thread(self._insert, project_id, rows, token)
                return True
            except (ClickHouseError, OSError, EOFError) as exc:
                log.warning("insert_failed", project=project_id, rows=len(rows), error=str(exc)[:300],
                            retry_in_s=backoff)
                self.client.disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return False

    def _insert(self, project_id: str, rows: list[tuple], token: str) -> None:
        if project_id not in self.migrated:  # a project created after start, or hw__unknown
            migrate_project(self.client, project_id)
            self.migrated.add(project_id)
        columns = [list(column) for column in zip(*rows)]
        self.client.execute(
            f"INSERT INTO {project_database(project_id)}.{self.target.table} "
            f"({', '.join(self.target.columns)}) VALUES",
            columns, columnar=True, settings={"insert_deduplication_token": token},
        )
