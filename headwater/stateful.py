"""The loop every stateful role shares: a state kept in memory and in a compacted changelog, and a
Kafka transaction per poll.

**State and delivery: exactly once within Kafka.** The role's state lives in memory (its
:class:`StateBook`) and in the book's compacted changelog. Every poll is handled in one Kafka
transaction: the poll's outputs (events for the next step, rows, changelog updates, dead letters)
and the input offsets are committed together, or not at all. After a crash (even ``kill -9``) the
transaction is aborted, the state is restored from the committed changelog and the same input is read
again. A transaction that fails without a crash (a broker restart) is aborted and recovered the same
way, in-process. While one poll's transaction is being committed (several round trips to the broker),
the next poll is worked out in memory; its transaction starts only once the previous one has
committed, and if that one aborted, the work is dropped with the rest of the state. When partitions
move to another replica, the poll in hand and the transaction in flight finish first, and the new
owner restores their state from the changelog before it reads them. Downstream consumers read
committed records only.

Each role names its transactions (:func:`transactional_clients`): the sessionizer after its replica's
``instance_id``, so a restarted replica fences its previous incarnation at once; the identity role
with one name for every replica, so there is one writer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter

from headwater.consuming import Resource, run_consumer
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
from headwater.relay_types import Output
from headwater.settings import Settings
from headwater.step_counts import StepCounts

log = structlog.get_logger()

Batch = dict[TopicPartition, list[ConsumerRecord]]


class StateBook(Protocol):
    """A stateful role's rules and state, which :class:`TransactionalLoop` makes durable."""

    changelog: str  # the compacted topic the state is restored from
    counts: PartitionMap  # every topic's partition count
    step_counts: StepCounts  # produced in the transactions
    rows_metric: tuple[str, str]  # the name and help of the counter of the rows a poll writes

    def changelog_partitions(self, numbers: list[int]) -> list[int]:
        """The changelog partitions to read when these input partitions are assigned."""

    def forget(self, numbers: Iterable[int]) -> None:
        """Drop the state of these input partitions (gone to another replica, or ahead of what was committed)."""

    def restoring(self, numbers: list[int]) -> None:
        """Start the state of these input partitions empty, to be filled by :meth:`restore_record`."""

    def restore_record(self, number: int, record: ConsumerRecord) -> None:
        """Apply one changelog record of changelog partition ``number``."""

    def size(self, numbers: list[int]) -> int:
        """How many keys the state of these input partitions holds (for the log)."""

    def poll(self, batch: Batch, now: float) -> tuple[list[Output], int]:
        """Everything one transaction writes for this poll, and the number of rows among it."""

    def rows_due(self, now: float) -> bool:
        """Whether a poll without records has rows to write."""

    def summary(self) -> dict:
        """The book's running counts, for the poll's log line."""


class OneWriterState:
    """What a book whose state is one whole (every project's, not per input partition) does when
    partitions come and go: it restores its one changelog partition when it has none loaded, and drops
    everything when any partition leaves (the role has one writer, so that only happens when it stops
    or is fenced). The book empties its state in :meth:`clear`."""

    loaded = False

    def clear(self) -> None:
        raise NotImplementedError

    def changelog_partitions(self, numbers: list[int]) -> list[int]:
        return [] if self.loaded else [0]

    def forget(self, numbers: Iterable[int]) -> None:
        if list(numbers):
            self.clear()
            self.loaded = False

    def restoring(self, numbers: list[int]) -> None:
        if not self.loaded:
            self.clear()
            self.loaded = True


def transactional_clients(settings: Settings, group_id: str, transactional_id: str) -> Clients:
    """A consumer of ``group_id``, a transactional producer with ``transactional_id``, and
    read-committed changelog readers."""
    return Clients(
        consumer=make_consumer(settings, [], group_id),
        new_producer=lambda: make_producer(settings, transactional_id=transactional_id,
                                           transaction_timeout_ms=15_000),
        new_reader=lambda: AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False,
                                            isolation_level="read_committed"))


@dataclasses.dataclass
class Clients:
    """A stateful role's Kafka clients: its group's consumer, and how to make a transactional producer
    (again, after a broker restart broke the last one: the same transactional id fences it) and a
    read-committed reader of the changelog."""

    consumer: AIOKafkaConsumer
    new_producer: Callable[[], AIOKafkaProducer]
    new_reader: Callable[[], AIOKafkaConsumer]


class StatefulMetrics:
    def __init__(self, name: str, rows_metric: tuple[str, str]) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("headwater_events", "events handled (forwarded or dead-lettered)", ["step"],
                              registry=self.registry).labels(name)
        self.rows = Counter(*rows_metric, registry=self.registry)
        self.aborted = Counter("headwater_transactions_aborted", "transactions aborted and recovered from the "
                               "changelog", registry=self.registry)


class Restore(ConsumerRebalanceListener):
    """Marks partitions for restoring; the poll loop restores them before it handles any record, so
    a restore never races a batch. Before partitions go, the poll being handled and the transaction
    in flight finish (committed or aborted): their new owner restores what this one committed."""

    def __init__(self, loop: TransactionalLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.loop.handling:
            await self.loop.transaction_ended()
            numbers = [tp.partition for tp in revoked]
            self.loop.book.forget(numbers)
            self.loop.to_restore.difference_update(numbers)

    async def on_partitions_assigned(self, assigned) -> None:
        self.loop.to_restore.update(tp.partition for tp in assigned)


class TransactionalLoop:
    """The transactional loop around a :class:`StateBook` (delivery and commit semantics: see the
    module), reading the topics ``inputs`` in the consumer group ``group_id``. ``resources`` (the
    project store) are started, and ``check`` run, before the first record is read. ``fault_hold_s`` holds each
    transaction open between its sends and its commit (a stalled replica, for the fencing tests)."""

    name: str

    def __init__(self, settings: Settings, book: StateBook, clients: Clients, *resources: Resource,
                 inputs: tuple[str, ...], group_id: str, check: Callable[[], None] | None = None,
                 fault_hold_s: float = 0.0) -> None:
        self.settings = settings
        self.book = book
        self.clients = clients
        self.consumer = clients.consumer
        self.producer = clients.new_producer()
        self.resources = resources
        self.check = check
        self.inputs = inputs
        self.group_id = group_id
        self.fault_hold_s = fault_hold_s
        self.to_restore: set[int] = set()
        self.failed_transactions = 0  # in a row: the pause before the next attempt grows with it
        self.handling = asyncio.Lock()  # held from a poll's first change to the state until its transaction starts
        self.committing: asyncio.Task | None = None  # the previous poll's transaction
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.metrics = StatefulMetrics(self.name, book.rows_metric)

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await run_consumer(self, self.metrics.registry, self.resources, self.check, self.book.counts,
                           lambda: self.consumer.subscribe(list(self.inputs), listener=Restore(self)))

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
            tps = [TopicPartition(self.book.changelog, n) for n in self.book.changelog_partitions(numbers)]
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
        log.info("state_restored", partitions=numbers, keys=self.book.size(numbers),
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
        self.metrics.rows.inc(rows)
        log.info("batch", group=self.group_id, records=sum(map(len, batch.values())),
                 events=sum(o.events for o in outputs if not o.dead and o.topic != self.book.changelog),
                 rows=rows, **self.book.summary(),
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
            if self.fault_hold_s:
                log.warning("fault_hold", seconds=self.fault_hold_s)
                await asyncio.sleep(self.fault_hold_s)
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
