"""The sessionize step: a stateful stream processor keyed by (project, visitor).

Each event gets a session ``{"id", "seq"}``, and session changes become rows of the ``sessions``
table; the rules are in :mod:`processors.sessions`, the state and what a poll writes in
:class:`processors.session_book.SessionBook`. This module makes that state durable.

**State and delivery: exactly once within Kafka.** Each visitor's state lives in memory and in the
compacted changelog ``headwater.sessionize-state``, in the partition of the same number as the input
partition. Every poll is handled in one Kafka transaction: the events for the next step, the session
rows, the changelog updates and the input offsets are committed together, or not at all. After a
crash (even ``kill -9``) the transaction is aborted, the state is restored from the committed
changelog and the same input is read again, so a session is neither split nor counted twice. A
transaction that fails without a crash (a broker restart) is aborted and recovered the same way,
in-process. While one poll's transaction is being committed (several round trips to the broker),
the next poll is worked out in memory; its transaction starts only once the previous one has
committed, and if that one aborted, the work is dropped with the rest of the state. When partitions
move to another replica (scaling out or in), the poll in hand and the transaction in flight finish
first, and the new owner restores their state from the changelog before it reads them. Downstream
consumers read committed records only.

A replica's transactions are named after ``instance_id`` (default: the host name): give each replica
its own stable id, so a restarted replica fences its previous incarnation at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import CollectorRegistry, Counter

from headwater.consuming import run_consumer
from headwater.errors import FatalError
from headwater.kafka import (
    PRODUCER_BROKEN,
    kafka_connection,
    make_consumer,
    make_producer,
    send_in_batches,
    stop_replaced,
)
from headwater.partitioning import PartitionMap
from headwater.projects.store import ProjectStore
from headwater.relay_types import Output
from headwater.settings import Settings
from headwater.topics import processor_group, step_topic
from processors.session_book import NAME, Batch, SessionBook, options_in

log = structlog.get_logger()


@dataclasses.dataclass
class Clients:
    """The sessionizer's Kafka clients: its group's consumer, and how to make a transactional producer
    (again, after a broker restart broke the last one: the same transactional id fences it) and a
    read-committed reader of the changelog."""

    consumer: AIOKafkaConsumer
    new_producer: Callable[[], AIOKafkaProducer]
    new_reader: Callable[[], AIOKafkaConsumer]


class SessionizerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("headwater_events", "events handled (forwarded or dead-lettered)", ["step"],
                              registry=self.registry).labels(NAME)
        self.session_rows = Counter("headwater_session_rows", "rows written to the sessions topic",
                                    registry=self.registry)
        self.aborted = Counter("headwater_transactions_aborted", "transactions aborted and recovered from the "
                               "changelog", registry=self.registry)


class Restore(ConsumerRebalanceListener):
    """Marks partitions for restoring; the poll loop restores them before it handles any record, so
    a restore never races a batch. Before partitions go, the poll being handled and the transaction
    in flight finish (committed or aborted): their new owner restores what this one committed."""

    def __init__(self, sessionizer: Sessionizer) -> None:
        self.sessionizer = sessionizer

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.sessionizer.handling:
            await self.sessionizer.transaction_ended()
            numbers = [tp.partition for tp in revoked]
            self.sessionizer.book.forget(numbers)
            self.sessionizer.to_restore.difference_update(numbers)

    async def on_partitions_assigned(self, assigned) -> None:
        self.sessionizer.to_restore.update(tp.partition for tp in assigned)


class Sessionizer:
    """The transactional loop around a :class:`SessionBook` (delivery and commit semantics: see the
    module). ``resources`` (the project store) are started before, and ``check`` run, before the
    first record is read."""

    name = NAME

    def __init__(self, settings: Settings, book: SessionBook, clients: Clients, *resources,
                 check: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.book = book
        self.clients = clients
        self.consumer = clients.consumer
        self.producer = clients.new_producer()
        self.resources = resources
        self.check = check
        self.input = step_topic(settings, NAME)
        self.group_id = processor_group(NAME)
        self.to_restore: set[int] = set()
        self.failed_transactions = 0  # in a row: the pause before the next attempt grows with it
        self.handling = asyncio.Lock()  # held from a poll's first change to the state until its transaction starts
        self.committing: asyncio.Task | None = None  # the previous poll's transaction
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.metrics = SessionizerMetrics()

    @classmethod
    def role(cls, settings: Settings, check: Callable[[list], None]) -> Sessionizer:
        """The sessionizer with its project store, partition counts and Kafka clients; ``check`` is given
        the stored projects and raises on any problem of the configuration."""
        store, counts = ProjectStore(settings), PartitionMap()
        book = SessionBook(settings, options_in(settings, store), counts)
        instance = settings.instance_id or socket.gethostname()
        clients = Clients(
            consumer=make_consumer(settings, [], processor_group(NAME)),
            new_producer=lambda: make_producer(settings, transactional_id=f"headwater-{NAME}-{instance}",
                                               transaction_timeout_ms=15_000),
            new_reader=lambda: AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False,
                                                isolation_level="read_committed"))
        return cls(settings, book, clients, store, check=lambda: check(list(store.projects.values())))

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await run_consumer(self, self.metrics.registry, self.resources, self.check, self.book.counts,
                           lambda: self.consumer.subscribe([self.input], listener=Restore(self)))

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
        async with self.handling:
            if self.to_restore:
                if not await self.settle():  # aborted and recovered: this poll is read again
                    return
                numbers, self.to_restore = sorted(self.to_restore), set()
                await self.restore(numbers)  # what was committed, so after the transaction in flight
            owned = self.consumer.assignment()
            batch = {tp: records for tp, records in batch.items() if tp in owned}
            if batch or self.book.rows_due(time.monotonic()) or self.book.step_counts.is_due():
                await self.handle(batch)

    async def drain(self) -> None:
        await self.settle()

    async def restore(self, numbers: list[int]) -> None:
        """Load the committed changelog of these partitions."""
        started = time.perf_counter()
        reader = self.clients.new_reader()
        await reader.start()
        try:
            tps = [TopicPartition(self.book.changelog, n) for n in numbers]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            self.book.restoring(numbers)
            while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                for tp, records in (await reader.getmany(timeout_ms=500)).items():
                    for record in records:
                        self.book.restore_record(tp.partition, record)
        finally:
            await reader.stop()
        log.info("state_restored", partitions=numbers, visitors=self.book.visitors(numbers),
                 ms=round((time.perf_counter() - started) * 1000, 1))

    async def handle(self, batch: Batch) -> None:
        """Work out the poll's outputs while the previous poll's transaction is being committed, then
        start its own. When the previous one failed, the state is restored and this poll dropped:
        its records are read again."""
        started = time.perf_counter()
        outputs, rows = self.book.poll(batch, time.monotonic())
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        if await self.settle():
            self.committing = asyncio.create_task(self._commit(outputs, offsets, batch, rows, started))

    async def _commit(self, outputs: list[Output], offsets: dict, batch: Batch, rows: int,
                      started: float) -> BaseException | None:
        """The poll's transaction; returns the Kafka error that aborted it, if one did."""
        try:
            await self._transaction(outputs, offsets)
        except (TimeoutError, KafkaError) as exc:
            if isinstance(exc, ProducerFenced):
                raise
            return exc
        self.failed_transactions = 0
        self.metrics.events.inc(sum(o.events for o in outputs))  # rows and changelog records carry none
        self.metrics.session_rows.inc(rows)
        log.info("batch", group=self.group_id, records=sum(map(len, batch.values())),
                 events=sum(o.events for o in outputs if not o.dead and o.topic != self.book.changelog),
                 session_rows=rows, too_late=self.book.too_late, copies_dropped=self.book.copies_dropped,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return None

    async def transaction_ended(self) -> None:
        """Wait until the transaction in flight is committed or aborted (its outcome is handled by
        :meth:`settle`)."""
        if self.committing is not None:
            await asyncio.wait([self.committing])

    async def settle(self) -> bool:
        """Wait for the transaction in flight; False when it was aborted, after recovering from it."""
        if self.committing is None:
            return True
        committing, self.committing = self.committing, None
        failure = await committing
        if failure is None:
            return True
        await self.after_failed_transaction(failure)
        return False

    async def _transaction(self, outputs: list[Output], offsets: dict) -> None:
        """Produce the outputs and commit them with the input offsets, all or nothing. Every send is
        awaited before the commit: aiokafka's commit waits for the transaction's batches to finish but
        not to succeed, so a batch that failed in a broker restart would be left out of a committed
        transaction."""
        await self.producer.begin_transaction()
        try:
            deliveries = await send_in_batches(self.producer, outputs, self.book.counts.counts.__getitem__)
            await asyncio.gather(*deliveries)
            if self.settings.sessionize_fault_hold_s:  # a stalled replica, for the fencing test
                log.warning("fault_hold", seconds=self.settings.sessionize_fault_hold_s)
                await asyncio.sleep(self.settings.sessionize_fault_hold_s)
            if offsets:  # none when the poll only writes session rows that fell due
                await self.producer.send_offsets_to_transaction(offsets, self.group_id)
            await self.producer.commit_transaction()
        except ProducerFenced as exc:  # the broker aborted this transaction when the successor took the id
            raise FatalError("fenced: a newer replica with the same instance_id owns this one's "
                             "transactions; this one stops") from exc
        except BaseException:
            try:
                await self.producer.abort_transaction()
            except BaseException as abort_failed:  # the producer is unusable: a restart starts clean
                raise FatalError(f"could not abort the transaction: {abort_failed!r}") from abort_failed
            raise

    async def after_failed_transaction(self, exc: BaseException) -> None:
        """Recover the state, replace a producer the broker restart broke (its sequence numbers no
        longer match: every later transaction would fail the same way), and pause before the retry."""
        self.failed_transactions += 1
        self.metrics.aborted.inc()
        pause = min(0.5 * 2 ** (self.failed_transactions - 1), 10.0)
        log.warning("transaction_aborted", error=type(exc).__name__, attempt=self.failed_transactions,
                    retry_in_s=pause, note="state restored from the changelog; the batch is read again")
        if isinstance(exc, PRODUCER_BROKEN):
            await stop_replaced(self.producer)
            self.producer = self.clients.new_producer()
            await self.producer.start()  # a new epoch for the same transactional id
        await self.recover()
        await asyncio.sleep(pause)

    async def recover(self) -> None:
        """After an aborted transaction the in-memory state is ahead of the committed changelog: drop
        it, and read the partitions' state and input again from what was committed (as a restart does)."""
        assigned = sorted(tp.partition for tp in self.consumer.assignment())
        self.book.forget(assigned)
        self.to_restore.update(assigned)
        if assigned:
            await self.consumer.seek_to_committed()
