"""The sessionize step: a stateful stream processor keyed by (project, visitor).

Each event gets a session ``{"id", "seq"}``. The sessionizer reads the *visits* the step before it
sent beside the events (``hw-visits``: what sessionizing reads of each event, far cheaper to decode
than the events) and passes the record's bytes on as they came, with each event's ``[id, seq]`` in
``hw-sessions``, which the indexer stores; a record without matching visits (a flow starting with
this step, an older release), or holding a copy to drop, is decoded and re-encoded with
``enriched.session`` set instead. Session changes become rows of the ``sessions`` table
(``headwater.sessions``: the previous row cancelled with sign -1, the new one with sign +1 and the
next version, for a ``VersionedCollapsingMergeTree``). A new session's row is written
in the poll that started it, a closed session's final row in the poll that closed it, and the changes
to an open session at most every ``session_row_interval_s`` (wall clock, also when no events arrive):
the sessions table trails the events by up to that interval. The rules are in
:mod:`processors.sessions`.

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
import socket
import time
from collections import defaultdict

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from headwater import metrics
from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import Envelope, decode_batch
from headwater.errors import FatalError
from headwater.kafka import (PRODUCER_BROKEN, kafka_connection, make_consumer, make_producer, send_in_batches,
                             stop_replaced)
from headwater.partitioning import PartitionMap, partition_of
from headwater.projects.store import ProjectStore
from headwater.relay_types import Output
from headwater.routing import (EVENTS_HEADER, PROJECT_HEADER, SESSIONS_HEADER, VISITS_HEADER, encode_route,
                               event_count, header_value, remaining_route)
from headwater.settings import Settings
from headwater.topics import session_state_topic, sessions_topic, step_topic, topic_specs
from processors import session_changelog
from processors.base import encode_groups, group_id
from processors.checks import require_valid
from processors.sessions import SessionOptions, VisitorState, event_time_ms

log = structlog.get_logger()
NAME = "sessionize"
DAY_MS = 86_400_000
SWEEP_EVERY_MS = 60_000  # of event time


def _visits(record: ConsumerRecord) -> list[Envelope] | None:
    """The visits the previous step sent beside the record's events (``processors.sessions.visit``),
    or ``None`` when there are none, or not one for each event (the events are decoded instead)."""
    raw = header_value(record.headers, VISITS_HEADER)
    if raw is None:
        return None
    visits = decode_batch(raw)
    return visits if len(visits) == event_count(record.headers) else None


def _decoded(record: ConsumerRecord, visits: list[Envelope]) -> list[Envelope]:
    """The record's events, decoded, each with its visit's session; the copies (their visits got no
    session) left out."""
    events = decode_batch(record.value)
    if len(events) != len(visits):
        raise ValueError(f"{len(visits)} visits for {len(events)} events")
    out = []
    for event, visit in zip(events, visits):
        if "session" in visit.enriched:
            event.enriched["session"] = visit.enriched["session"]
            out.append(event)
    return out


class Partition:
    """The state of one input partition: visitors, and per project the newest event time seen, capped
    at each event's receive time (each project's clock is its own: one project's events must not make
    another's look late)."""

    def __init__(self) -> None:
        self.visitors: dict[str, VisitorState] = {}
        self.watermarks: dict[str, int] = {}
        self.swept: dict[str, int] = {}  # the watermark at the last sweep for idle sessions
        # visitors whose open session changed since its last row, oldest first: key -> since (monotonic)
        self.pending: dict[str, float] = {}


class Restore(ConsumerRebalanceListener):
    """Marks partitions for restoring; the poll loop restores them before it handles any record, so
    a restore never races a batch. Before partitions go, the poll being handled and the transaction
    in flight finish (committed or aborted): their new owner restores what this one committed."""

    def __init__(self, sessionizer: Sessionizer) -> None:
        self.sessionizer = sessionizer

    async def on_partitions_revoked(self, revoked) -> None:
        async with self.sessionizer.handling:
            await self.sessionizer.transaction_ended()
            for tp in revoked:
                self.sessionizer.partitions.pop(tp.partition, None)
                self.sessionizer.to_restore.discard(tp.partition)

    async def on_partitions_assigned(self, assigned) -> None:
        self.sessionizer.to_restore.update(tp.partition for tp in assigned)


class Sessionizer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ProjectStore(settings)
        self.counts = PartitionMap()
        self.input = step_topic(settings, NAME)
        self.changelog = session_state_topic(settings)
        self.group = group_id(NAME)
        self.partitions: dict[int, Partition] = {}
        self.to_restore: set[int] = set()
        self.consumer = make_consumer(settings, [], self.group)
        self.producer = self._make_producer()
        self.failed_transactions = 0  # in a row: the pause before the next attempt grows with it
        self.handling = asyncio.Lock()  # held from a poll's first change to the state until its transaction starts
        self.committing: asyncio.Task | None = None  # the previous poll's transaction
        self.stopping = asyncio.Event()
        self.too_late = 0
        self.copies_dropped = 0  # events whose message id the visitor's last few events already had

    def _make_producer(self):
        instance = self.settings.instance_id or socket.gethostname()
        return make_producer(self.settings, transactional_id=f"headwater-{NAME}-{instance}",
                             transaction_timeout_ms=15_000)

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.producer.start()
        await self.store.start()
        require_valid(self.settings, list(self.store.projects.values()))
        await self.counts.load(self.producer, [spec.name for spec in topic_specs(self.settings)])
        self.consumer.subscribe([self.input], listener=Restore(self))
        await self.consumer.start()
        stop_lag = metrics.serve_with_lag(CollectorRegistry(), self.settings, [(self.consumer, self.group)],
                                     self.stopping)
        try:
            while not self.stopping.is_set():
                await self._poll(await self.consumer.getmany(timeout_ms=200, max_records=2000))
        finally:
            await self._settle()
            stop_lag()
            await self.consumer.stop()
            await self.store.stop()
            await self.producer.stop()

    async def _poll(self, batch: dict) -> None:
        async with self.handling:
            if self.to_restore:
                if not await self._settle():  # aborted and recovered: this poll is read again
                    return
                numbers, self.to_restore = sorted(self.to_restore), set()
                await self.restore(numbers)  # what was committed, so after the transaction in flight
            owned = self.consumer.assignment()
            batch = {tp: records for tp, records in batch.items() if tp in owned}
            if batch or self._rows_due(time.monotonic()):
                await self._handle(batch)

    async def restore(self, numbers: list[int]) -> None:
        """Load the committed changelog of these partitions."""
        started = time.perf_counter()
        reader = AIOKafkaConsumer(**kafka_connection(self.settings), enable_auto_commit=False,
                                  isolation_level="read_committed")
        await reader.start()
        try:
            tps = [TopicPartition(self.changelog, n) for n in numbers]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            ends = await reader.end_offsets(tps)
            for tp in tps:
                self.partitions[tp.partition] = Partition()
            while [tp for tp in tps if await reader.position(tp) < ends[tp]]:
                for tp, records in (await reader.getmany(timeout_ms=500)).items():
                    for record in records:
                        self._restore_record(tp.partition, record)
        finally:
            await reader.stop()
        log.info("state_restored", partitions=numbers, visitors=sum(len(self.partitions[n].visitors) for n in numbers),
                 ms=round((time.perf_counter() - started) * 1000, 1))

    def _restore_record(self, number: int, record: ConsumerRecord) -> None:
        partition, key = self.partitions[number], record.key.decode()
        if record.value is None:
            partition.visitors.pop(key, None)
            return
        project_id = key.partition(":")[0]
        try:
            state, watermark = session_changelog.load(record.value, project_id)
        except (ValueError, TypeError) as exc:  # not written by a sessionizer: the visitor starts afresh
            log.error("changelog_value_unreadable", key=key, offset=record.offset, error=str(exc))
            partition.visitors.pop(key, None)
            return
        partition.watermarks[project_id] = max(partition.watermarks.get(project_id, 0), watermark)
        partition.visitors[key] = state
        if state.changed:  # its latest row was never written: at the next poll
            partition.pending[key] = 0.0

    def _outputs(self, batch: dict) -> tuple[list[Output], int]:
        """Everything one transaction writes for this poll: the events for the next step, the session
        rows that are due, and the changelog of every visitor whose state changed; and the row count."""
        outputs, rows, touched = self._sessionize(batch)
        self._due_rows(time.monotonic(), rows, touched)
        return outputs + self._session_outputs(rows) + self._changelog_outputs(touched), sum(map(len, rows.values()))

    async def _handle(self, batch: dict) -> None:
        """Work out the poll's outputs while the previous poll's transaction is being committed, then
        start its own. When the previous one failed, the state is restored and this poll dropped:
        its records are read again."""
        started = time.perf_counter()
        outputs, rows = self._outputs(batch)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        if await self._settle():
            self.committing = asyncio.create_task(self._commit(outputs, offsets, batch, rows, started))

    async def _commit(self, outputs: list[Output], offsets: dict, batch: dict, rows: int,
                      started: float) -> BaseException | None:
        """The poll's transaction; returns the Kafka error that aborted it, if one did."""
        try:
            await self._transaction(outputs, offsets)
        except (KafkaError, asyncio.TimeoutError) as exc:
            if isinstance(exc, ProducerFenced):
                raise
            return exc
        self.failed_transactions = 0
        log.info("batch", group=self.group, records=sum(map(len, batch.values())),
                 events=sum(o.events for o in outputs if not o.dead and o.topic != self.changelog),
                 session_rows=rows, too_late=self.too_late, copies_dropped=self.copies_dropped,
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return None

    async def transaction_ended(self) -> None:
        """Wait until the transaction in flight is committed or aborted (its outcome is handled by
        :meth:`_settle`)."""
        if self.committing is not None:
            await asyncio.wait([self.committing])

    async def _settle(self) -> bool:
        """Wait for the transaction in flight; False when it was aborted, after recovering from it."""
        if self.committing is None:
            return True
        committing, self.committing = self.committing, None
        failure = await committing
        if failure is None:
            return True
        await self._after_failed_transaction(failure)
        return False

    async def _transaction(self, outputs: list[Output], offsets: dict) -> None:
        """Produce the outputs and commit them with the input offsets, all or nothing. Every send is
        awaited before the commit: aiokafka's commit waits for the transaction's batches to finish but
        not to succeed, so a batch that failed in a broker restart would be left out of a committed
        transaction (found by `make chaos`: events and session rows lost, their input committed)."""
        await self.producer.begin_transaction()
        try:
            deliveries = await send_in_batches(self.producer, outputs, self.counts.counts.__getitem__)
            await asyncio.gather(*deliveries)
            if offsets:  # none when the poll only writes session rows that fell due
                await self.producer.send_offsets_to_transaction(offsets, self.group)
            await self.producer.commit_transaction()
        except BaseException:
            try:
                await self.producer.abort_transaction()
            except BaseException as abort_failed:  # the producer is unusable: a restart starts clean
                raise FatalError(f"could not abort the transaction: {abort_failed!r}") from abort_failed
            raise

    async def _after_failed_transaction(self, exc: BaseException) -> None:
        """Recover the state, replace a producer the broker restart broke (its sequence numbers no
        longer match: every later transaction would fail the same way), and pause before the retry."""
        self.failed_transactions += 1
        pause = min(0.5 * 2 ** (self.failed_transactions - 1), 10.0)
        log.warning("transaction_aborted", error=type(exc).__name__, attempt=self.failed_transactions,
                    retry_in_s=pause, note="state restored from the changelog; the batch is read again")
        if isinstance(exc, PRODUCER_BROKEN):
            await stop_replaced(self.producer)
            self.producer = self._make_producer()
            await self.producer.start()  # a new epoch for the same transactional id
        await self._recover()
        await asyncio.sleep(pause)

    async def _recover(self) -> None:
        """After an aborted transaction the in-memory state is ahead of the committed changelog: drop
        it, and read the partitions' state and input again from what was committed (as a restart does)."""
        assigned = sorted(tp.partition for tp in self.consumer.assignment())
        for number in assigned:
            self.partitions.pop(number, None)
        self.to_restore.update(assigned)
        if assigned:
            await self.consumer.seek_to_committed()

    def _sessionize(self, batch: dict) -> tuple[list[Output], dict, dict]:
        """Apply every event; return the outputs for the next step, the session rows by input
        partition, and the touched visitors by (partition, key)."""
        outputs, groups = [], defaultdict(list)
        rows: dict[int, list] = defaultdict(list)
        touched: dict[tuple[int, str], VisitorState] = {}
        for tp, records in batch.items():
            partition = self.partitions.setdefault(tp.partition, Partition())
            projects = set()  # whose visitors this partition's records touched
            for record in records:
                try:
                    rest = remaining_route(record.headers, NAME)
                    visits = _visits(record)
                    envelopes = visits if visits is not None else decode_batch(record.value)
                except ValueError as exc:
                    outputs.append(dead_letter(self.settings, record, Rejected("unparseable", str(exc)), NAME))
                    continue
                topic = step_topic(self.settings, rest[0])
                kept = []
                for envelope in envelopes:
                    projects.add(envelope.project_id)
                    key = self._continue_across_midnight(tp.partition, partition, envelope, touched)
                    state = partition.visitors.setdefault(key, VisitorState())
                    touched[(tp.partition, key)] = state
                    if state.seen(envelope.message_id):  # a copy: neither counted nor forwarded
                        self.copies_dropped += 1
                        continue
                    rows[tp.partition] += self._apply(partition, state, envelope)
                    kept.append(envelope)
                if visits is not None and len(kept) == len(visits):
                    outputs.append(self._passed_on(record, topic, rest, kept))
                    continue
                if visits is not None:  # copies among them: the other events are decoded and re-encoded
                    try:  # events that do not match their visits cannot come from our steps: dead-lettered whole
                        kept = _decoded(record, visits)
                    except ValueError as exc:
                        outputs.append(dead_letter(self.settings, record, Rejected("unparseable", str(exc)), NAME))
                        continue
                for envelope in kept:
                    slot = (topic, rest, envelope.project_id, partition_of(envelope.key(), self.counts.counts[topic]))
                    groups[slot].append(envelope)
            for project_id in projects:
                rows[tp.partition] += self._close_idle(tp.partition, partition, project_id, touched)
        for (topic, rest, _, _), envelopes in groups.items():
            outputs.extend(encode_groups(topic, rest, envelopes))
        now = time.monotonic()
        for (number, key), state in touched.items():
            if state is None or not state.changed:
                continue
            if state.emitted is None:  # a new session: its first row at once
                project_id, _, visitor = key.partition(":")
                rows[number] += state.rows(project_id, visitor)
            else:
                self.partitions[number].pending.setdefault(key, now)
        return outputs, rows, touched

    def _passed_on(self, record: ConsumerRecord, topic: str, rest: tuple[str, ...], visits: list[Envelope]) -> Output:
        """The record's events as they came, for the next step, with each one's session beside them."""
        sessions = [[session.get("id", ""), session.get("seq", 0)] for session in
                    (visit.enriched["session"] for visit in visits)]
        key = visits[0].key()
        headers = [(PROJECT_HEADER, visits[0].project_id.encode()), (EVENTS_HEADER, str(len(visits)).encode()),
                   *encode_route(rest), (SESSIONS_HEADER, orjson.dumps(sessions))]
        return Output(topic, key, record.value, headers, events=len(visits),
                      partition=partition_of(key, self.counts.counts[topic]))

    def _rows_due(self, now: float) -> bool:
        horizon = now - self.settings.session_row_interval_s
        return any(next(iter(p.pending.values())) <= horizon for p in self.partitions.values() if p.pending)

    def _due_rows(self, now: float, rows: dict[int, list], touched: dict) -> None:
        """Add the rows of open sessions whose changes have waited ``session_row_interval_s``; their
        visitors' changelog records follow (the emitted row and version are part of the state)."""
        horizon = now - self.settings.session_row_interval_s
        for number, partition in self.partitions.items():
            pending = partition.pending
            while pending:
                key, since = next(iter(pending.items()))
                if since > horizon:
                    break
                del pending[key]
                state = partition.visitors.get(key)
                if state is None or not state.changed:  # closed (its rows written) or forgotten since
                    continue
                project_id, _, visitor = key.partition(":")
                rows[number] += state.rows(project_id, visitor)
                touched[(number, key)] = state

    def _continue_across_midnight(self, number: int, partition: Partition, envelope: Envelope,
                                  touched: dict) -> str:
        """The visitor's state key. A cookieless visitor's id changes at midnight UTC; when the new id
        has no state and the one made with yesterday's salt has an open session, that state moves to
        the new id (both are in this partition: cookieless events are partitioned by a stable bucket)."""
        key = envelope.visitor_key()
        previous = envelope.enriched.get("previous_visitor_id")
        if previous and key not in partition.visitors:
            old_key = f"{envelope.project_id}:{previous}"
            old = partition.visitors.get(old_key)
            if old is not None and old.session is not None:
                partition.visitors[key] = partition.visitors.pop(old_key)
                touched[(number, old_key)] = None  # its changelog record is deleted
        return key

    def _options(self, project_id: str) -> SessionOptions:
        return self.store.derived(project_id, "sessions", lambda project: SessionOptions.of(self.settings, project))

    def _apply(self, partition: Partition, state: VisitorState, envelope: Envelope) -> list:
        ts = event_time_ms(envelope)
        options = self._options(envelope.project_id)
        lateness = int(self.settings.session_allowed_lateness_s * 1000)
        # The project's clock follows event time but never passes the time the event was received: a
        # sender's far-future timestamp must not make every other visitor of the project look late.
        clock = min(ts, envelope.received_at_ms)
        watermark = partition.watermarks[envelope.project_id] = max(partition.watermarks.get(envelope.project_id, 0),
                                                                    clock)
        if state.session is None and ts < watermark - lateness:
            result, closed = None, []
        else:
            result, closed = state.apply(envelope, ts, options)
        if result is None:
            self.too_late += 1
            envelope.enriched["session"] = {}
        else:
            envelope.enriched["session"] = {"id": result[0], "seq": result[1]}
        return closed

    def _close_idle(self, number: int, partition: Partition, project_id: str, touched: dict) -> list:
        """Close the project's sessions its watermark has passed; forget visitors idle past their
        retention. Runs when the watermark moved at least a minute since the last sweep."""
        rows, lateness = [], int(self.settings.session_allowed_lateness_s * 1000)
        retention = int(self.settings.session_visitor_retention_days * DAY_MS)
        watermark = partition.watermarks.get(project_id, 0)
        if watermark - partition.swept.get(project_id, 0) < SWEEP_EVERY_MS:
            return rows
        partition.swept[project_id] = watermark
        horizon = watermark - lateness
        options = self._options(project_id)
        prefix = project_id + ":"
        for key, state in list(partition.visitors.items()):
            if not key.startswith(prefix) or state.session is None:
                continue
            if state.session["end_ms"] + options.timeout_ms < horizon:
                project_id, _, visitor = key.partition(":")
                rows += state.rows(project_id, visitor)
                state.last_ms = state.session["end_ms"]
                state.session, state.emitted, state.version = None, None, 0
                touched[(number, key)] = state
        for key, state in list(partition.visitors.items()):
            if key.startswith(prefix) and state.session is None and state.last_ms + retention < horizon:
                del partition.visitors[key]
                touched[(number, key)] = None
        return rows

    def _session_outputs(self, rows: dict[int, list]) -> list[Output]:
        return [Output(sessions_topic(self.settings), None, orjson.dumps(part_rows), [],
                                  events=0, partition=number)
                for number, part_rows in rows.items() if part_rows]

    def _changelog_outputs(self, touched: dict) -> list[Output]:
        outputs = []
        for (number, key), state in touched.items():
            value = None
            if state is not None:
                watermark = self.partitions[number].watermarks.get(key.partition(":")[0], 0)
                value = session_changelog.dump(state, watermark)
            outputs.append(Output(self.changelog, key.encode(), value, [], events=0, partition=number))
        return outputs
