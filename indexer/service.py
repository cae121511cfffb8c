"""The indexer role: loads a target table (``events``, ``sessions``, ``failed_events`` or
``step_counts``) of every project, each table by its own consumer group; one process can load several
(:class:`Indexers`).

Delivery and commit semantics:

- It batches by size (``indexer_batch_rows``) and by time (``indexer_batch_ms``, one INSERT per table
  and project per batch) and commits Kafka offsets only after ClickHouse has acknowledged every INSERT
  of the batch. The next batch fills while one is being inserted (a batch's INSERT takes a third to
  half of the batch window at 15,000 events/s; records arriving meanwhile would otherwise wait for it
  and then a whole window); batches are inserted and committed strictly one after another. Each
  INSERT carries an ``insert_deduplication_token`` built from its offset ranges, so an INSERT
  retried after a lost acknowledgement is stored once.
- **Exactly once in the table across crashes.** Every row keeps the partition and offset of its record.
  The first time a batch holds records of a (project, partition) after an assignment, the indexer asks
  the table for the highest offset already stored at or after where it started reading; records up to
  it were inserted by a run that died before committing, and are skipped. One INSERT is one part, so
  a batch's rows for a project are all there or none are.
- **ClickHouse refusing an INSERT for what it holds** (:mod:`indexer.refusals`, for example more
  monthly partitions than one INSERT may touch): the INSERT is split in two halves, inserted in
  turn, down to single records; a record refused on its own becomes a ``refused`` dead letter, acked
  by Kafka before any record after it is inserted (so a crash cannot skip it). One bad record never
  holds up the others.
- **ClickHouse down or failing otherwise:** the same batch is retried with backoff (0.5 s doubling to
  30 s); meanwhile the assigned partitions are paused (also while the next batch is full), so
  nothing new is read and lag grows (exported as ``headwater_consumer_lag``), while polling continues
  so the consumer keeps its group membership.
  It resumes by itself. A rebalance that takes a partition of the batch away drops the batch without
  committing it: the partition's new owner loads it.
- Unreadable records (not a list of envelopes of their project) insert nothing and are dead-lettered:
  those found when reading before the batch is inserted, those ClickHouse finds right after its
  INSERT; always before the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import structlog
from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from headwater.clickhouse import make_client, project_database
from headwater.consuming import run_consumer, run_side_by_side
from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import decode_batch
from headwater.kafka import make_consumer, make_producer
from headwater.migrations import migrate_project
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from indexer.refusals import refusal_detail, refused_for_content
from indexer.targets import Item, Target, target

log = structlog.get_logger()
MAX_BACKOFF_S = 30.0
MAX_RECORDS_PER_POLL = 500
POLL_WHILE_INSERTING_MS = 20  # a batch whose window is over polls this often until the previous INSERT ends
POLL_WHILE_FAILING_MS = 500  # and this often while that INSERT is failing (ClickHouse away)
INSERT_ERRORS = (ClickHouseError, OSError, EOFError)


class Batch:
    """Records waiting to be inserted, grouped by project, with the offsets they came from."""

    def __init__(self, target: Target, generation: int) -> None:
        self.target = target
        self.generation = generation  # the assignment it was read under
        self.started = time.monotonic()
        self.items: dict[str, list[Item]] = defaultdict(list)
        self.first: dict[TopicPartition, int] = {}
        self.next_offsets: dict[TopicPartition, int] = {}
        self.records = 0
        self.events = 0
        self.rejected: list[tuple[ConsumerRecord, Rejected]] = []
        # where each assigned partition's reading stood when the batch closed: every record before
        # it is in this batch or an earlier one (a position can be past a transaction marker)
        self.positions: dict[TopicPartition, int] = {}

    def add(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        self.first.setdefault(tp, record.offset)
        self.next_offsets[tp] = record.offset + 1
        self.records += 1
        try:
            pairs = self.target.items(record)
        except Rejected as error:
            self.rejected.append((record, error))
            return
        for project_id, item in pairs:
            self.items[project_id].append(item)
            self.events += item.events

    def token(self, project_id: str) -> str:
        ranges = sorted(f"{tp.topic}/{tp.partition}/{self.first[tp]}-{n}" for tp, n in self.next_offsets.items())
        return f"{self.target.table}|{project_id}|" + ",".join(ranges)

    def age_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000


class Watermarks:
    """Per (project, partition): the highest offset whose rows are already in the table, at or after
    the offset this assignment started reading the partition from (-1: none)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self.starts: dict[int, int] = {}
        self.known: dict[tuple[str, int], int] = {}

    def reset(self) -> None:
        self.starts.clear()
        self.known.clear()

    def note_start(self, tp: TopicPartition, offset: int) -> None:
        self.starts.setdefault(tp.partition, offset)

    def unstored(self, client: Client, db: str, project_id: str, items: list[Item]) -> list[Item]:
        partitions = {item.record.partition for item in items}
        unknown = [p for p in partitions if (project_id, p) not in self.known]
        if unknown:
            rows = client.execute(
                f"SELECT kafka_partition, max(kafka_offset) FROM {db}.{self.table} "
                "WHERE kafka_partition IN %(p)s AND kafka_offset >= %(from)s GROUP BY kafka_partition",
                {"p": unknown, "from": min(self.starts[p] for p in unknown)})
            found = dict(rows)
            for p in unknown:
                stored = found.get(p, -1)
                self.known[(project_id, p)] = stored if stored >= self.starts[p] else -1
        return [item for item in items if item.record.offset > self.known[(project_id, item.record.partition)]]


class IndexerMetricFamilies:
    """The indexer's metrics, labelled by table, on one registry: a process loading several tables
    serves them together."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.rows = Counter("headwater_indexer_rows", "rows inserted", ["table"], registry=registry)
        self.skipped = Counter("headwater_indexer_records_skipped", "records already in the table (replayed)",
                               ["table"], registry=registry)
        self.refused = Counter("headwater_indexer_records_refused", "records ClickHouse refused for their content "
                               "(dead-lettered)", ["table"], registry=registry)
        self.failures = Counter("headwater_indexer_insert_failures", "INSERTs that failed and were retried",
                                ["table"], registry=registry)
        self.paused = Gauge("headwater_indexer_paused", "1 while inserts fail and consumption is paused",
                            ["table"], registry=registry)
        self.flush_seconds = Histogram("headwater_indexer_flush_seconds", "time to insert and commit a batch",
                                       ["table"], registry=registry)


class IndexerMetrics:
    """One table's share of :class:`IndexerMetricFamilies`."""

    def __init__(self, table: str, families: IndexerMetricFamilies | None = None) -> None:
        families = families or IndexerMetricFamilies()
        self.registry = families.registry
        self.rows = families.rows.labels(table)
        self.skipped = families.skipped.labels(table)
        self.refused = families.refused.labels(table)
        self.failures = families.failures.labels(table)
        self.paused = families.paused.labels(table)
        self.flush_seconds = families.flush_seconds.labels(table)


class Reassigned(ConsumerRebalanceListener):
    """Waits for an insert in progress before partitions go, and forgets the watermarks."""

    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.indexer.lock:
            self.indexer.generation += 1
            self.indexer.watermarks.reset()
            self.indexer.committed.clear()

    async def on_partitions_assigned(self, assigned) -> None:
        self.indexer.watermarks.reset()


class Indexer:
    """Loads ``table``; with ``families``, its metrics are served by whoever runs it
    (:class:`Indexers`), else on ``metrics_port``."""

    def __init__(self, settings: Settings, table: str = "events",
                 families: IndexerMetricFamilies | None = None) -> None:
        self.settings = settings
        self.store = ProjectStore(settings)
        self.target = target(table, settings, self.store)
        self.consumer = make_consumer(settings, [], self.target.group_id)
        self.producer = make_producer(settings)
        self.client = make_client(settings)
        self.metrics = IndexerMetrics(table, families)
        self.serve_metrics = families is None
        self.watermarks = Watermarks(self.target.table)
        self.migrated: set[str] = set()
        self.lock = asyncio.Lock()
        self.generation = 0
        self.committed: dict[TopicPartition, int] = {}  # what this process last committed
        self.flushing: asyncio.Task | None = None  # the previous batch's INSERT and commit
        self.failing = False  # the last INSERT attempt failed: read nothing new until one succeeds
        self.group_id = self.target.group_id
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            registry = self.metrics.registry if self.serve_metrics else None
            await run_consumer(self, registry, (self.store,), subscribe=lambda: self.consumer.subscribe(
                [self.target.topic], listener=Reassigned(self)))
        finally:
            self.client.disconnect()

    async def poll(self) -> None:
        """Fill a batch while the previous one is inserted, then insert and commit it in the background."""
        batch = await self._fill()
        await self._settle()
        if not self.stopping.is_set():
            self.flushing = asyncio.create_task(self._flush(batch))

    async def drain(self) -> None:
        await self._settle()

    async def _fill(self) -> Batch:
        """Poll into a new batch for ``indexer_batch_ms`` or until it holds ``indexer_batch_rows``, and
        on while the previous batch is still being inserted (paused once full, or while inserts fail)."""
        batch = Batch(self.target, self.generation)
        while not self.stopping.is_set():
            inserting = self.flushing is not None and not self.flushing.done()
            full = batch.events >= self.settings.indexer_batch_rows
            wait_ms = self.settings.indexer_batch_ms - batch.age_ms()
            if not inserting and (full or wait_ms <= 0):
                break
            self._hold_reading(full or self.failing)
            slice_ms = POLL_WHILE_FAILING_MS if self.failing else POLL_WHILE_INSERTING_MS
            polled = await self.consumer.getmany(timeout_ms=int(max(wait_ms, slice_ms)),
                                                 max_records=MAX_RECORDS_PER_POLL)
            if batch.generation != self.generation:  # a rebalance: start again from the committed offsets
                batch = await self._restart_batch(batch)
                continue
            for tp, records in polled.items():
                self.watermarks.note_start(tp, records[0].offset)
                for record in records:
                    batch.add(tp, record)
        batch.positions = await self._positions(batch)
        return batch

    def _hold_reading(self, hold: bool) -> None:
        """Pause every assigned partition, or resume them. A paused partition's position stays where
        the batch left it: nothing past it is returned, or committed, until it is resumed."""
        if hold:
            self.consumer.pause(*self.consumer.assignment())
        elif self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())

    async def _positions(self, batch: Batch) -> dict[TopicPartition, int]:
        try:
            return {tp: await self.consumer.position(tp) for tp in self.consumer.assignment()}
        except (IllegalStateError, KafkaError):  # a partition taken away meanwhile
            return dict(batch.next_offsets)

    async def _settle(self) -> None:
        """Wait for the previous batch's INSERT and commit (re-raising what made it fail for good)."""
        if self.flushing is not None:
            flushing, self.flushing = self.flushing, None
            await flushing

    async def _restart_batch(self, batch: Batch) -> Batch:
        log.info("batch_dropped", reason="partitions reassigned", records=batch.records)
        if self.consumer.assignment():
            await self.consumer.seek_to_committed()
        return Batch(self.target, self.generation)

    async def _flush(self, batch: Batch) -> None:
        """Insert the batch, dead-letter its unreadable records and commit; retry until done, stopped, or
        a partition of the batch is taken away (then the batch being filled starts again from the
        committed offsets)."""
        if not batch.records:
            await self._commit(batch)  # positions may have moved past transaction markers only
            return
        started, backoff = time.perf_counter(), 0.5
        pending = dict(batch.items)
        await self._dead_letter(batch.rejected)
        while not self.stopping.is_set():
            async with self.lock:
                if batch.generation != self.generation:
                    log.info("batch_dropped", reason="partitions reassigned", records=batch.records)
                    return
                try:
                    dead_lettered = await asyncio.to_thread(self._insert_all, batch, pending)
                except INSERT_ERRORS as exc:
                    self._insert_failed(exc, backoff)
                else:
                    await self._commit(batch)
                    self._inserted()
                    self.metrics.flush_seconds.observe(time.perf_counter() - started)
                    log.info("batch", table=self.target.table, records=batch.records, rows=batch.events,
                             projects=len(batch.items), dead_lettered=len(batch.rejected) + dead_lettered,
                             ms=round((time.perf_counter() - started) * 1000, 1))
                    return
            try:  # the batch being filled meanwhile keeps polling, so the group keeps this member
                await asyncio.wait_for(self.stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _insert_all(self, batch: Batch, pending: dict[str, list[Item]]) -> int:
        """Insert each project's items (removing them from ``pending`` once acknowledged); return how
        many records were dead-lettered. Runs in a worker thread."""
        dead_lettered = 0
        for project_id in list(pending):
            db = project_database(project_id)
            if project_id not in self.migrated:  # a project created after start, or hw__unknown
                migrate_project(self.client, project_id)
                self.migrated.add(project_id)
            items = self.watermarks.unstored(self.client, db, project_id, pending[project_id])
            self.metrics.skipped.inc(len(pending[project_id]) - len(items))
            if items:
                dead_lettered += self._insert_in_order(db, project_id, items, batch.token(project_id))
            del pending[project_id]
        self._hold_before_commit()
        return dead_lettered

    def _insert_in_order(self, db: str, project_id: str, items: list[Item], token: str) -> int:
        """Insert the items with one INSERT; when ClickHouse refuses it for its content, insert the first
        half and then the second the same way, so that a record refused on its own is dead-lettered
        before any record after it is stored. Return how many records were dead-lettered."""
        try:
            unreadable = self.target.insert(self.client, db, project_id, items, token)
        except INSERT_ERRORS as exc:
            if not refused_for_content(exc):
                raise
            if len(items) == 1:
                self.metrics.refused.inc()
                log.warning("record_refused", table=self.target.table, project=project_id,
                            partition=items[0].record.partition, offset=items[0].record.offset,
                            error=refusal_detail(exc))
                self._dead_letter_now([(items[0].record, Rejected("refused", refusal_detail(exc)))])
                return 1
            half = len(items) // 2
            return (self._insert_in_order(db, project_id, items[:half], f"{token}|1")
                    + self._insert_in_order(db, project_id, items[half:], f"{token}|2"))
        self.metrics.rows.inc(sum(item.events for item in items if item not in unreadable))
        self._dead_letter_now([(item.record, unreadable_record()) for item in unreadable])
        return len(unreadable)

    def _dead_letter_now(self, rejected_records: list[tuple[ConsumerRecord, Rejected]]) -> None:
        """From the insert thread: dead-letter and wait for Kafka's acknowledgement."""
        if rejected_records:
            assert self.loop is not None  # set by run(), before any insert
            asyncio.run_coroutine_threadsafe(self._dead_letter(rejected_records), self.loop).result()

    def _hold_before_commit(self) -> None:
        """Fault injection for the crash test: sleep after the INSERT so a kill -9 lands before the commit."""
        if self.settings.indexer_fault_hold_s:
            log.warning("fault_hold", seconds=self.settings.indexer_fault_hold_s)
            time.sleep(self.settings.indexer_fault_hold_s)

    def _insert_failed(self, exc: Exception, backoff: float) -> None:
        self.failing = True
        self.metrics.failures.inc()
        self.metrics.paused.set(1)
        log.warning("insert_failed", table=self.target.table, error=str(exc)[:300], retry_in_s=backoff)
        self.client.disconnect()

    def _inserted(self) -> None:
        if self.failing:
            self.failing = False
            self.metrics.paused.set(0)
            log.info("resumed", table=self.target.table)

    async def _dead_letter(self, rejected_records: list[tuple[ConsumerRecord, Rejected]]) -> None:
        for record, error in rejected_records:
            for out in dead_letters(self.settings, record, error):
                await self.producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)

    async def _commit(self, batch: Batch) -> None:
        """Commit where the batch left each partition (see :attr:`Batch.positions`), where it moved."""
        try:
            assigned = self.consumer.assignment()
            moved = {tp: offset for tp, offset in batch.positions.items()
                     if tp in assigned and self.committed.get(tp) != offset}
            if moved:
                await self.consumer.commit(moved)
                self.committed.update(moved)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            self.committed.clear()
            log.warning("commit_failed", error=str(exc), note="the batch will be delivered again and skipped")


class Indexers:
    """Several tables loaded by one process (``headwater indexer failed_events step_counts``): each
    by its own consumer group, with the semantics of :class:`Indexer`; one metrics endpoint. A table
    whose indexer fails stops the others, and the process exits."""

    def __init__(self, settings: Settings, tables: list[str]) -> None:
        self.settings = settings
        self.families = IndexerMetricFamilies()
        self.indexers = [Indexer(settings, table, self.families) for table in tables]
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await run_side_by_side(self.indexers, self.families.registry, self.settings, self.stopping)

    def stop(self) -> None:
        self.stopping.set()
        for indexer in self.indexers:
            indexer.stop()


def dead_letters(settings: Settings, record: ConsumerRecord, error: Rejected) -> list:
    """A refused record of envelopes becomes a dead letter per event (each replayable on its own); any
    other record, one dead letter holding its bytes."""
    if error.reason == "refused":
        try:
            return [dead_letter(settings, record, error, "index", envelope) for envelope in decode_batch(record.value)]
        except ValueError:
            pass
    return [dead_letter(settings, record, error, "index")]


def unreadable_record() -> Rejected:
    return Rejected("unparseable", "not a non-empty list of envelopes, each with a message id, of the "
                                   "record's project")
