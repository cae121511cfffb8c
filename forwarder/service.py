"""The forwarder role: every project's destinations, each fed by its own consumer group.

One :class:`Forwarder` runs one destination. It reads the index topic (the events as the pipeline
finished them: after the privacy policy, the project's transformations and sessionisation) in the
group ``headwater-forwarder-<project>-<name>``, takes its project's events that the destination's
condition selects, applies its transformation (declarative, or an installed Python one within
``transform_budget_ms``, its failures dead-lettered), and delivers them in batches (``max_events``,
``max_ms``). :class:`Forwarders` runs every destination of every project in one process, starting,
stopping and restarting them as their definitions change; several such processes share the work (each
destination's partitions are spread over them, as any consumer group's are).

Delivery and commit semantics:

- **At least once.** Offsets are committed only after the batch is delivered, or dead-lettered with
  Kafka's acknowledgement. A crash in between delivers the batch again: HTTP destinations get the same
  events with their ``messageId`` (and, for a webhook, an ``Idempotency-Key`` per batch); the lake
  replaces the files that held them (exactly once, :mod:`forwarder.lake`).
- **Each destination advances alone.** A destination that is slow, failing or paused holds back only
  its own group: ClickHouse's indexer and the other destinations read the same topic in theirs.
- **Retries.** A batch the destination could not take (network errors, timeouts, 408, 429, 5xx) is
  tried again, after ``Retry-After`` when the destination gave one, else 0.5 s doubling with full
  jitter up to ``forward_max_backoff_s``, until it goes through; meanwhile the group's partitions are
  paused and polled, so it keeps its members and lag grows. Batches go strictly in order, so each
  visitor's events (one partition) arrive in order.
- **Refusals.** A batch refused for what it holds (HTTP 400, 413, 422; a record too large) is split in
  halves down to single events, so only the events refused on their own become dead letters; a refusal
  about the destination itself (401, 403, 404, an address that is not public) dead-letters the whole
  batch. Dead letters (step ``forward:<name>``, reason ``destination_refused``) hold the event as it
  left the pipeline, before the destination's transformation, and ``headwater replay --destination``
  delivers them again after a fix.
- **Where a new destination starts:** at the first event indexed at or after its ``created_at_ms``;
  afterwards where its group committed. ``headwater destination replay`` moves the group back to a
  point in time.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import os
import random
import socket
import time

import orjson
import structlog
from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Info

from forwarder.outcomes import Delivered, Item, Outcome, Refused, Retry
from forwarder.registry import check_project, make_destination
from headwater.deadletter import Rejected, dead_letter
from headwater.destination_status import HEARTBEAT_S, DestinationStatus
from headwater.destinations import ALERTS, DestinationSpec, parse_destinations
from headwater.envelope import Envelope, decode_batch
from headwater.flow import INDEX_STEP
from headwater.kafka import make_consumer, make_producer
from headwater.metrics import ConsumerLag, Heartbeat, metrics_and_liveness, serve_in_thread
from headwater.plugins import Plugin, TransformContext, installed, plugin_events, run_plugin
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.routing import PROJECT_HEADER, header_value
from headwater.settings import Settings
from headwater.step_counts import StepCounts
from headwater.topics import alerts_topic, forwarder_status_topic, step_topic

log = structlog.get_logger()
FORWARD_STEP = "forward"
POLL_RECORDS = 50
RECONCILE_S = 1.0


def batch_id(spec: DestinationSpec, items: list[Item]) -> str:
    """The batch's idempotency key: the same events of the same destination give the same key."""
    ranges: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    for item in items:
        first, last = ranges.get(item.partition, ((item.offset, item.index), (item.offset, item.index)))
        ranges[item.partition] = (min(first, (item.offset, item.index)), max(last, (item.offset, item.index)))
    text = spec.group_id + "|" + ",".join(f"{p}:{a[0]}.{a[1]}-{b[0]}.{b[1]}" for p, (a, b) in sorted(ranges.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def python_events(spec: DestinationSpec, plugin: Plugin | None, envelope: Envelope, event: dict,
                  settings: Settings) -> list[dict | None]:
    """The destination's Python transformation on a copy of ``event``: its events (``[None]`` when it
    dropped it), a split's later ones with ``<messageId>:<n>``; raises ``Rejected`` as the transform step
    does (``transform_error``, ``transform_timeout``, ``transform_output``)."""
    if plugin is None:
        raise Rejected("transform_error", f"no transformation {spec.python!r} is installed in this forwarder "
                                          "(transforms_dir or the headwater.transforms entry points)")
    context = TransformContext(envelope.project_id, envelope.message_id, envelope.received_at_ms,
                               f"{FORWARD_STEP}:{spec.name}", plugin.version)
    result = run_plugin(plugin, orjson.loads(orjson.dumps(event)), context, settings.transform_budget_ms / 1000)
    events = plugin_events(result, settings.max_event_bytes)
    for n, out in enumerate(events):
        out["messageId"] = envelope.message_id if n == 0 else f"{envelope.message_id}:{n}"
    return list(events) or [None]


class ForwarderMetrics:
    """Per destination (``project``, ``destination`` labels), on one registry for the process."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        labels = ["project", "destination"]
        self.delivered = Counter("headwater_forwarder_delivered", "events delivered", labels, registry=registry)
        self.failed = Counter("headwater_forwarder_failed", "events refused by the destination (dead-lettered)",
                              labels, registry=registry)
        self.retried = Counter("headwater_forwarder_retried", "events whose delivery failed and was retried",
                               labels, registry=registry)
        self.failing = Gauge("headwater_forwarder_failing", "1 while the destination's deliveries fail and are "
                             "retried", labels, registry=registry)
        self.paused = Gauge("headwater_forwarder_paused", "1 while the destination is paused", labels,
                            registry=registry)
        self.last_error = Info("headwater_forwarder_last_error", "the destination's last error", labels,
                               registry=registry)
        self.last_error_time = Gauge("headwater_forwarder_last_error_timestamp_seconds", "when it happened",
                                     labels, registry=registry)
        self.refused_projects = Gauge("headwater_forwarder_projects_refused", "projects whose destinations this "
                                      "forwarder finds problems with, and does not run (see its log)",
                                      registry=registry)


class Batch:
    """Events selected for delivery, the records they came from, and where reading stood."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.items: list[Item] = []
        self.records: dict[tuple[int, int], ConsumerRecord] = {}
        self.positions: dict[TopicPartition, int] = {}
        self.considered = 0  # the project's events read
        self.not_selected = 0  # left out by the condition or the transformation
        self.delivered = 0
        self.refused = 0
        self.failed: list[tuple[ConsumerRecord, int, Rejected]] = []  # the Python transformation's failures


class Reassigned(ConsumerRebalanceListener):
    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder

    async def on_partitions_revoked(self, revoked) -> None:
        self.forwarder.generation += 1

    async def on_partitions_assigned(self, assigned) -> None:
        await self.forwarder.start_new_partitions(list(assigned))


class Forwarder:
    """One destination (see the module's semantics). ``producer`` writes its dead letters."""

    def __init__(self, settings: Settings, spec: DestinationSpec, metrics: ForwarderMetrics, producer,
                 counts: StepCounts, process: str) -> None:
        self.settings = settings
        self.spec = spec
        self.metrics = metrics
        self.counts = counts
        self.status = DestinationStatus(spec.project_id, spec.name, process)
        self.labels = (spec.project_id, spec.name)
        self.producer = producer
        self.destination = make_destination(spec, settings)
        self.plugin = installed(settings.transforms_dir)[0].get(spec.python) if spec.python else None
        self.topic = alerts_topic(settings) if spec.source == ALERTS else step_topic(settings, INDEX_STEP)
        self.consumer = make_consumer(settings, [], spec.group_id, auto_offset_reset="latest")
        self.group_id = spec.group_id
        self.generation = 0
        self.leftover: collections.deque[ConsumerRecord] = collections.deque()  # read, not yet in a batch
        self.leftover_generation = 0
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.destination.start()
        try:
            self.consumer.subscribe([self.topic], listener=Reassigned(self))
            await self.consumer.start()
            self.started.set()
            log.info("destination_started", destination=self.spec.key, type=self.spec.type)
            while not self.stopping.is_set():
                batch = await self._fill()
                if batch is not None and await self._deliver(batch):
                    await self._hold_before_commit(batch)
                    await self._commit(batch)
                    self._count(batch)
        finally:
            await self.consumer.stop()
            await self.destination.stop()

    async def start_new_partitions(self, assigned: list[TopicPartition]) -> None:
        """Partitions the group never committed start at the destination's creation time."""
        fresh = [tp for tp in assigned if await self.consumer.committed(tp) is None]
        if not fresh:
            return
        found = await self.consumer.offsets_for_times({tp: self.spec.created_at_ms for tp in fresh})
        ends = await self.consumer.end_offsets(fresh)
        for tp in fresh:
            self.consumer.seek(tp, found[tp].offset if found.get(tp) else ends[tp])

    async def _fill(self) -> Batch | None:
        """Read until the batch holds ``max_events`` events or ``max_ms`` passed; ``None`` when the
        partitions were reassigned meanwhile (reading starts again from the committed offsets). Records
        read past a full batch are kept for the next one (seeking back would fetch them again)."""
        batch = Batch(self.generation)
        deadline = time.monotonic() + self.spec.max_ms / 1000
        if self.leftover_generation != self.generation:
            self.leftover.clear()
        while not self.stopping.is_set() and len(batch.items) < self.spec.max_events:
            if not self.leftover:
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    break
                polled = await self.consumer.getmany(timeout_ms=wait_ms, max_records=POLL_RECORDS)
                if batch.generation != self.generation:
                    self.leftover.clear()
                    return None
                self.leftover.extend(record for records in polled.values() for record in records)
                self.leftover_generation = self.generation
            while self.leftover and len(batch.items) < self.spec.max_events:
                record = self.leftover.popleft()
                self._add(batch, record)
                batch.positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
        return batch

    def _add(self, batch: Batch, record: ConsumerRecord) -> None:
        project = header_value(record.headers, PROJECT_HEADER)
        if project is None or project.decode(errors="replace") != self.spec.project_id:
            return
        try:
            envelopes = decode_batch(record.value)
        except ValueError:
            return  # the indexer dead-letters unreadable records; nothing of them can be forwarded
        batch.considered += len(envelopes)
        for i, envelope in enumerate(envelopes):
            event = self.spec.select(envelope.event)
            try:
                events = self._python(envelope, event) if event is not None and self.spec.python else [event]
            except Rejected as error:
                batch.failed.append((record, i, error))
                batch.records[(record.partition, record.offset)] = record
                continue
            for event in events:
                if event is None:
                    batch.not_selected += 1
                    continue
                batch.items.append(Item(event, envelope.visitor_id, envelope.received_at_ms, record.partition,
                                        record.offset, i))
                batch.records[(record.partition, record.offset)] = record

    def _python(self, envelope: Envelope, event: dict) -> list[dict | None]:
        return python_events(self.spec, self.plugin, envelope, event, self.settings)

    async def _deliver(self, batch: Batch) -> bool:
        """Deliver the batch's events, retrying until done; dead-letter the refused ones. False when
        stopped or reassigned before the end (nothing is committed then)."""
        if batch.failed:
            await self._dead_letters(batch, [(record, index, error) for record, index, error in batch.failed])
        pending, backoff = ([batch.items] if batch.items else []), 0.5
        while pending:
            if self.stopping.is_set() or batch.generation != self.generation:
                return False
            items = pending[0]
            outcome = await self._attempt(items)
            if isinstance(outcome, Delivered):
                pending.pop(0)
                batch.delivered += len(items)
                self.metrics.delivered.labels(*self.labels).inc(len(items))
                self._failing(False)
                backoff = 0.5
            elif isinstance(outcome, Refused):
                pending.pop(0)
                if outcome.per_event and len(items) > 1:
                    pending[:0] = [items[:len(items) // 2], items[len(items) // 2:]]
                    continue
                self._error(outcome.reason)
                await self._dead_letter(batch, items, outcome.reason)
            else:
                self.metrics.retried.labels(*self.labels).inc(len(items))
                self.status.retried += len(items)
                self._failing(True)
                self._error(outcome.reason)
                await self._wait(max(outcome.after_s, random.uniform(0, backoff)))
                backoff = min(backoff * 2, self.settings.forward_max_backoff_s)
        return not self.stopping.is_set() and batch.generation == self.generation

    async def _attempt(self, items: list[Item]) -> Outcome:
        try:
            return await asyncio.wait_for(self.destination.deliver(items, batch_id(self.spec, items)),
                                          self.settings.forward_timeout_s * 3)
        except TimeoutError:
            return Retry("the delivery took too long")

    async def _wait(self, seconds: float) -> None:
        """Wait before a retry, polling the paused partitions so the group keeps this member."""
        seconds = min(seconds, self.settings.forward_max_backoff_s)
        log.info("retry_wait", destination=self.spec.key, seconds=round(seconds, 2))
        self.consumer.pause(*self.consumer.assignment())
        try:
            deadline = time.monotonic() + seconds
            while not self.stopping.is_set() and time.monotonic() < deadline:
                await self.consumer.getmany(timeout_ms=int(min(500, (deadline - time.monotonic()) * 1000)) + 1)
        finally:
            self.consumer.resume(*self.consumer.paused())

    def _count(self, batch: Batch) -> None:
        """The batch in the step counts: the project's events read (in), delivered (out), not selected
        by the condition or the transformation (dropped), refused (dead-lettered)."""
        if batch.considered:
            self.counts.add(self.spec.project_id, f"{FORWARD_STEP}:{self.spec.name}", batch.considered,
                            batch.delivered, batch.not_selected, batch.refused)

    def _failing(self, failing: bool) -> None:
        self.metrics.failing.labels(*self.labels).set(1 if failing else 0)
        self.status.failing = failing

    def _error(self, reason: str) -> None:
        self.status.last_error, self.status.last_error_at_ms = reason[:300], int(time.time() * 1000)
        log.warning("delivery_failed", destination=self.spec.key, error=reason[:300])
        self.metrics.last_error.labels(*self.labels).info({"error": reason[:300]})
        self.metrics.last_error_time.labels(*self.labels).set(time.time())

    async def _dead_letter(self, batch: Batch, items: list[Item], reason: str) -> None:
        """Each refused event as a dead letter."""
        error = Rejected("destination_refused", reason)
        records = [(batch.records[(item.partition, item.offset)], item.index, error) for item in items]
        await self._dead_letters(batch, list({(r.partition, r.offset, i): (r, i, e) for r, i, e in records}.values()))

    async def _dead_letters(self, batch: Batch, failures: list[tuple[ConsumerRecord, int, Rejected]]) -> None:
        """Each failed event as a dead letter (its envelope as it left the pipeline, before this
        destination's transformation), acknowledged by Kafka before the batch is committed."""
        sent: list = []
        decoded: dict[tuple[int, int], list[Envelope]] = {}  # each record's envelopes, decoded once
        for record, index, error in failures:
            place = (record.partition, record.offset)
            if place not in decoded:
                decoded[place] = decode_batch(record.value)
            envelope = decoded[place][index]
            out = dead_letter(self.settings, record, error, f"{FORWARD_STEP}:{self.spec.name}", envelope)
            sent.append(await self.producer.send(out.topic, out.value, key=out.key, headers=out.headers))
        await asyncio.gather(*sent)
        batch.refused += len(failures)
        self.metrics.failed.labels(*self.labels).inc(len(failures))

    async def _hold_before_commit(self, batch: Batch) -> None:
        """Fault injection for the crash test: a kill -9 lands between a delivery and its commit."""
        if self.settings.forward_fault_hold_s and batch.items:
            log.warning("fault_hold", destination=self.spec.key, seconds=self.settings.forward_fault_hold_s)
            await asyncio.sleep(self.settings.forward_fault_hold_s)

    async def _commit(self, batch: Batch) -> None:
        if not batch.positions:
            return
        try:
            assigned = self.consumer.assignment()
            await self.consumer.commit({tp: n for tp, n in batch.positions.items() if tp in assigned})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            log.warning("commit_failed", destination=self.spec.key, error=str(exc),
                        note="the batch will be delivered again")


class Forwarders:
    """Every destination of every project (or of ``only``, ``PROJECT/NAME`` keys) in one process.
    Every second it compares the destinations it runs with the projects' definitions: a new one starts,
    a removed or paused one stops (its group keeps its place), a changed one restarts. A destination
    whose forwarder fails is logged and started again at the next comparison; the others go on."""

    def __init__(self, settings: Settings, only: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.only = set(only)
        self.store = ProjectStore(settings)
        self.producer = make_producer(settings)
        self.metrics = ForwarderMetrics()
        self.counts = StepCounts(settings)
        self.process = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.published: dict[str, DestinationStatus] = {}
        self.logged: dict[str, str] = {}  # the problems logged of each project whose destinations do not run
        self.status_topic = forwarder_status_topic(settings)
        self.running: dict[str, tuple[Forwarder, asyncio.Task]] = {}
        self.consumers: list = []  # (consumer, group) of each running forwarder, for the lag metric
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        await self.producer.start()
        await self.store.start()
        stop_metrics = self._serve_metrics()
        try:
            while not self.stopping.is_set():
                await self._reconcile()
                await self._report(self.counts.due())
                try:
                    await asyncio.wait_for(self.stopping.wait(), RECONCILE_S)
                except TimeoutError:
                    pass
        finally:
            stop_metrics()
            await asyncio.gather(*(self._stop(key) for key in list(self.running)))
            await self._report(self.counts.flush(), final=True)
            await self.store.stop()
            await self.producer.stop()

    async def _report(self, counts: list, final: bool = False) -> None:
        """Produce the step counts due, and each destination's status that changed (or is due for its
        heartbeat); on the way out, remove this process's statuses."""
        try:
            for out in counts:
                await self.producer.send(out.topic, out.value, partition=out.partition)
            now = int(time.time() * 1000)
            running = {forwarder.status.key: forwarder.status for forwarder, _ in self.running.values()}
            for key, status in running.items():
                last = self.published.get(key)
                if status.changed_from(last) or now - (last.updated_at_ms if last else 0) >= HEARTBEAT_S * 1000:
                    status.updated_at_ms = now
                    await self.producer.send(self.status_topic, status.encode(), key=key.encode())
                    self.published[key] = dataclasses.replace(status)
            for key in [k for k in self.published if final or k not in running]:
                await self.producer.send(self.status_topic, None, key=key.encode())
                del self.published[key]
        except KafkaError as exc:
            log.warning("report_failed", error=str(exc))

    def wanted(self) -> dict[str, DestinationSpec]:
        """The destinations this process should run now, by key. A project whose destinations this
        process finds problems with (the admin checked them, but with another transforms_dir, say) runs
        none of them; the problems are logged once, and ``headwater_forwarder_projects_refused`` counts
        such projects."""
        wanted, refused = {}, 0
        for project in self.store.projects.values():
            problems, specs = self.store.derived(project.id, "destinations", self._checked)
            if problems:
                refused += 1
                self._problems(project.id, problems)
                continue
            for spec in specs:
                self.metrics.paused.labels(spec.project_id, spec.name).set(1 if spec.paused else 0)
                if project.enabled and not spec.paused and (not self.only or spec.key in self.only):
                    wanted[spec.key] = spec
        self.metrics.refused_projects.set(refused)
        return wanted

    def _checked(self, project: Project | None) -> tuple[list[str], list[DestinationSpec]]:
        """The project's destinations checked and parsed, once per version of its record."""
        if project is None or not project.destinations:
            return [], []
        problems = check_project(project, self.settings)
        return problems, [] if problems else parse_destinations(project.id, project.destinations)

    def _problems(self, project_id: str, problems: list[str]) -> None:
        said = "; ".join(problems)
        if self.logged.get(project_id) != said:
            self.logged[project_id] = said
            log.error("destinations_not_run", project=project_id, problems=said[:2000])

    async def _reconcile(self) -> None:
        wanted = self.wanted()
        for key, (forwarder, task) in list(self.running.items()):
            if task.done():
                error = task.exception() if not task.cancelled() else None
                log.error("destination_failed", destination=key, error=repr(error))
                await self._stop(key)
            elif key not in wanted or wanted[key].version != forwarder.spec.version:
                await self._stop(key)
        for key, spec in wanted.items():
            if key not in self.running:
                forwarder = Forwarder(self.settings, spec, self.metrics, self.producer, self.counts, self.process)
                self.running[key] = (forwarder, asyncio.create_task(forwarder.run()))
                self.consumers.append((forwarder.consumer, forwarder.group_id))

    async def _stop(self, key: str) -> None:
        forwarder, task = self.running.pop(key)
        self.consumers[:] = [c for c in self.consumers if c[0] is not forwarder.consumer]
        forwarder.stop()
        try:
            await task
        except Exception as exc:  # one destination's failure is logged, never the process's
            log.error("destination_stopped_with_error", destination=key, error=repr(exc))
        log.info("destination_stopped", destination=key)

    def _serve_metrics(self):
        if not self.settings.metrics_port:
            return lambda: None
        lag, heartbeat = ConsumerLag(self.metrics.registry, self.consumers), Heartbeat()
        serve_in_thread(self.settings, metrics_and_liveness(self.metrics.registry, heartbeat,
                                                            self.settings.liveness_stall_s))
        tasks = [asyncio.create_task(lag.run(self.stopping)), asyncio.create_task(heartbeat.run(self.stopping))]
        return lambda: [task.cancel() for task in tasks]
