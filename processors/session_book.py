"""The session book: the sessionizer's state and rules over Kafka records, with no Kafka client.

A poll's records go in (:meth:`SessionBook.poll`); out come the events for the next step (each with
its session), the session rows that are due and the changelog record of every visitor whose state
changed: everything the sessionizer's transaction writes for that poll. The book is restored from
the changelog record by record (:meth:`SessionBook.restore_record`). The rules of one visitor's
sessions are in :mod:`processors.sessions`; the transactions that make the book durable, in
:mod:`processors.sessionize`.

The sessionizer reads the *visits* the step before it sent beside the events (``hw-visits``: what
sessionizing reads of each event, far cheaper to decode than the events) and passes the record's
bytes on as they came, with each event's ``[id, seq]`` in ``hw-sessions``, which the indexer
stores; a record without matching visits (a flow starting with this step), or holding a copy to
drop, is decoded and re-encoded with ``enriched.session`` set instead. Session changes become rows
of the ``sessions`` table (``headwater.sessions``: the previous row cancelled with sign -1, the new
one with sign +1 and the next version, for a ``VersionedCollapsingMergeTree``). A new session's row
is written in the poll that started it, a closed session's final row in the poll that closed it, and
the changes to an open session at most every ``session_row_interval_s`` (wall clock, also when no
events arrive): the sessions table trails the events by up to that interval.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import orjson
import structlog
from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import Envelope, decode_batch
from headwater.partitioning import PartitionMap, partition_of
from headwater.projects.store import ProjectStore
from headwater.relay_types import Output
from headwater.routing import (
    EVENTS_HEADER,
    PROJECT_HEADER,
    SESSIONS_HEADER,
    VISITS_HEADER,
    encode_route,
    event_count,
    header_value,
    remaining_route,
)
from headwater.settings import Settings
from headwater.step_counts import StepCounts
from headwater.topics import session_state_topic, sessions_topic, step_topic
from processors import session_changelog
from processors.base import encode_groups
from processors.sessions import SessionOptions, VisitorState, event_time_ms

log = structlog.get_logger()
NAME = "sessionize"
DAY_MS = 86_400_000
SWEEP_EVERY_MS = 60_000  # of event time
Batch = dict  # what getmany returns: a topic partition's records, in offset order, by topic partition


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


def options_in(settings: Settings, store: ProjectStore) -> Callable[[str], SessionOptions]:
    """A project's session options, from its stored configuration (worked out once per change)."""
    return lambda project_id: store.derived(project_id, "sessions",
                                            lambda project: SessionOptions.of(settings, project))


class SessionBook:
    """Every visitor's state in the input partitions this replica owns.

    ``options`` gives a project's session options; ``counts`` holds every topic's partition count
    (the events for the next step go to the partition of their key).
    """

    rows_metric = ("headwater_session_rows", "rows written to the sessions topic")

    def __init__(self, settings: Settings, options: Callable[[str], SessionOptions], counts: PartitionMap) -> None:
        self.settings = settings
        self.options = options
        self.counts = counts
        self.changelog = session_state_topic(settings)
        self.partitions: dict[int, Partition] = {}
        self.too_late = 0
        self.copies_dropped = 0  # events whose message id the visitor's last few events already had
        self.step_counts = StepCounts(settings)  # produced in the transactions, with the events

    def forget(self, numbers) -> None:
        """Drop the state of these partitions (gone to another replica, or ahead of what was committed)."""
        for number in numbers:
            self.partitions.pop(number, None)

    def restoring(self, numbers) -> None:
        """Start these partitions empty, to be filled by :meth:`restore_record`."""
        for number in numbers:
            self.partitions[number] = Partition()

    def size(self, numbers) -> int:
        return sum(len(self.partitions[n].visitors) for n in numbers if n in self.partitions)

    def changelog_partitions(self, numbers: list[int]) -> list[int]:
        """A visitor's state is in the changelog partition of its input partition's number."""
        return numbers

    def summary(self) -> dict:
        return {"too_late": self.too_late, "copies_dropped": self.copies_dropped}

    def restore_record(self, number: int, record: ConsumerRecord) -> None:
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

    def poll(self, batch: Batch, now: float) -> tuple[list[Output], int]:
        """Everything one transaction writes for this poll: the events for the next step, the session
        rows that are due, and the changelog of every visitor whose state changed; and the row count."""
        outputs, rows, touched = self.sessionize(batch, now)
        self.due_rows(now, rows, touched)
        return (outputs + self.session_outputs(rows) + self.changelog_outputs(touched) + self.step_counts.due(),
                sum(map(len, rows.values())))

    def sessionize(self, batch: Batch, now: float) -> tuple[list[Output], dict, dict]:
        """Apply every event; return the outputs for the next step, the session rows by input
        partition, and the touched visitors by (partition, key). ``now`` (monotonic seconds) is when
        the poll is handled: an open session's changes wait ``session_row_interval_s`` from it."""
        outputs, groups = [], defaultdict(list)
        tallies: dict[str, list[int]] = {}  # per project: events in, events passed on (the rest are copies)
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
                if envelopes:  # added up per poll: the counts cost nothing per record
                    tally = tallies.setdefault(envelopes[0].project_id, [0, 0])
                    tally[0] += len(envelopes)
                    tally[1] += len(kept)
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
        for project_id, (events, kept_events) in tallies.items():
            self.step_counts.add(project_id, NAME, events, kept_events, events - kept_events)
        for (topic, rest, _, _), envelopes in groups.items():
            outputs.extend(encode_groups(topic, rest, envelopes))
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

    def rows_due(self, now: float) -> bool:
        horizon = now - self.settings.session_row_interval_s
        return any(next(iter(p.pending.values())) <= horizon for p in self.partitions.values() if p.pending)

    def due_rows(self, now: float, rows: dict[int, list], touched: dict) -> None:
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

    def _apply(self, partition: Partition, state: VisitorState, envelope: Envelope) -> list:
        ts = event_time_ms(envelope)
        options = self.options(envelope.project_id)
        lateness = int(self.settings.session_allowed_lateness_s * 1000)
        # The project's clock follows event time but never passes the time the event was received: a
        # sender's far-future timestamp must not make every other visitor of the project look late.
        clock = min(ts, envelope.received_at_ms)
        watermark = partition.watermarks[envelope.project_id] = max(partition.watermarks.get(envelope.project_id, 0),
                                                                    clock)
        closed: list[list] = []
        result: tuple[str, int] | None = None
        if state.session is not None or ts >= watermark - lateness:  # else too late for any session
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
        rows: list[list] = []
        lateness = int(self.settings.session_allowed_lateness_s * 1000)
        retention = int(self.settings.session_visitor_retention_days * DAY_MS)
        watermark = partition.watermarks.get(project_id, 0)
        if watermark - partition.swept.get(project_id, 0) < SWEEP_EVERY_MS:
            return rows
        partition.swept[project_id] = watermark
        horizon = watermark - lateness
        options = self.options(project_id)
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

    def session_outputs(self, rows: dict[int, list]) -> list[Output]:
        return [Output(sessions_topic(self.settings), None, orjson.dumps(part_rows), [],
                                  events=0, partition=number)
                for number, part_rows in rows.items() if part_rows]

    def changelog_outputs(self, touched: dict) -> list[Output]:
        outputs = []
        for (number, key), state in touched.items():
            value = None
            if state is not None:
                watermark = self.partitions[number].watermarks.get(key.partition(":")[0], 0)
                value = session_changelog.dump(state, watermark)
            outputs.append(Output(self.changelog, key.encode(), value, [], events=0, partition=number))
        return outputs
