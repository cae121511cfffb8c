"""The consume -> transform -> produce -> commit loop that the mediator and every processor run.

Delivery is at-least-once. Offsets of a polled batch are committed only after every record the batch
produced has been acknowledged by Kafka (``acks=all``). A crash between produce and commit delivers
the batch again, so downstream may see an event twice; the indexer removes such duplicates. A record
(or one event of it) the transform rejects goes to the dead-letter topic with a typed reason and
never blocks its partition.

A flood of rejections (a bad deploy, a broken schema, or a sender gone wrong) raises the alarm: when
more than ``max_invalid_ratio`` of the last ``invalid_window`` events were rejected, the relay logs
``too_many_invalid`` (critical) and sets ``headwater_invalid_flood{step}`` to 1 until the share falls
again; the rejected events are dead-lettered and can be replayed after the fix. With
``stop_on_invalid_flood`` it instead raises :class:`TooManyInvalid` *before* producing or committing
the batch that tipped it, and the process stops (it reads that batch again after the fix). That is
off by default: bad events sent with a public write key would otherwise stop the pipeline for every
project, and again after every restart.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

import structlog
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Gauge

from headwater.consuming import Resource, run_consumer
from headwater.errors import FatalError
from headwater.kafka import PRODUCER_BROKEN, fetch_limits, make_consumer, make_producer, stop_replaced
from headwater.partitioning import PartitionMap
from headwater.relay_types import Output
from headwater.settings import Settings
from headwater.step_counts import StepCounts

log = structlog.get_logger()
Transform = Callable[[list[ConsumerRecord]], list[Output]]
"""Takes every record of one poll (each partition's records in offset order) and returns what to
produce. Transforms merge the events of many small records into few large ones per output partition:
Kafka's per-message cost, not the per-event work, is what limits a Python pipeline."""


class TooManyInvalid(FatalError):
    """The share of rejected events crossed ``max_invalid_ratio``."""


RETRY_PRODUCE_S = 300.0  # how long a batch is retried while Kafka is away, before the process gives up


def _retriable(exc: BaseException) -> bool:
    """Worth sending again: Kafka's retriable errors, timeouts, and a producer broken by a restart."""
    return isinstance(exc, (KafkaTimeoutError, asyncio.TimeoutError, *PRODUCER_BROKEN)) or \
        bool(getattr(exc, "retriable", False))


class InvalidRatio:
    """The share of rejected events over the last ``window`` events."""

    def __init__(self, limit: float, window: int) -> None:
        self.limit = limit
        self.window = window
        self.batches: collections.deque[tuple[int, int]] = collections.deque()
        self.events = self.rejected = 0

    def add(self, events: int, rejected: int) -> None:
        self.batches.append((events, rejected))
        self.events += events
        self.rejected += rejected
        while len(self.batches) > 1 and self.events - self.batches[0][0] >= self.window:
            old_events, old_rejected = self.batches.popleft()
            self.events -= old_events
            self.rejected -= old_rejected

    def tripped(self) -> bool:
        enough = self.events >= min(self.window, 100)
        return enough and self.rejected / self.events > self.limit


class RelayMetrics:
    """A process's relay metrics, labelled by step; a process running several steps shares one."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("headwater_events", "events handled (forwarded or dead-lettered)", ["step"],
                              registry=self.registry)
        self.dead_letters = Counter("headwater_dead_letters", "events sent to the dead-letter topic", ["step"],
                                    registry=self.registry)
        self.flood = Gauge("headwater_invalid_flood", "1 while more than max_invalid_ratio of recent events "
                           "were rejected", ["step"], registry=self.registry)


class Relay:
    """Runs one consumer group over ``topics`` and forwards what ``transform`` returns.

    ``partitions`` is loaded with every topic's partition count, ``resources`` (the project store,
    ...) are started, and ``check`` validates the configuration, before the first record is read.
    With ``serve_metrics`` off, whoever runs the relay serves ``metrics`` (and its lag). ``input_codec``
    names the setting of the codec ``topics`` are written with, which sizes the fetches.
    """

    def __init__(self, settings: Settings, group_id: str, topics: list[str], transform: Transform,
                 partitions: PartitionMap, step: str, resources: tuple[Resource, ...] = (),
                 check: Callable[[], None] | None = None, metrics: RelayMetrics | None = None,
                 serve_metrics: bool = True, input_codec: str = "kafka_compression",
                 counts: StepCounts | None = None) -> None:
        self.settings = settings
        self.group_id = group_id
        self.transform = transform
        self.partitions = partitions
        self.step = step
        self.resources = resources
        self.check = check
        self.consumer = make_consumer(settings, topics, group_id, **fetch_limits(settings, input_codec))
        self.producer = make_producer(settings)
        self.invalid = InvalidRatio(settings.max_invalid_ratio, settings.invalid_window)
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()  # set once the consumer has started
        self.metrics = metrics or RelayMetrics()
        self.serve_metrics = serve_metrics
        self.events_out = self.metrics.events.labels(step)
        self.dead_letters = self.metrics.dead_letters.labels(step)
        self.flood = self.metrics.flood.labels(step)
        self.flooding = False
        self.counts = counts

    async def run(self) -> None:
        await run_consumer(self, self.metrics.registry if self.serve_metrics else None, self.resources, self.check,
                           self.partitions)

    async def poll(self) -> None:
        batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
        if batch:
            await self._relay(batch)
        elif self.counts is not None and (idle := self.counts.due()):
            await self._produce(idle)

    async def drain(self) -> None:
        """Nothing is in flight between polls: a poll's outputs are acknowledged and its offsets
        committed before the next. What the steps counted since the last flush goes out last."""
        if self.counts is not None and self.counts.rows:
            try:
                await asyncio.wait_for(self._produce(self.counts.flush()), 10.0)
            except (TimeoutError, KafkaError) as exc:
                log.warning("step_counts_lost", group=self.group_id, error=type(exc).__name__)

    def stop(self) -> None:
        self.stopping.set()

    async def _produce(self, outputs: list) -> None:
        """Send a batch's outputs and wait for every acknowledgement. While the broker is unreachable
        or electing leaders (a restart), send the whole batch again after a pause, up to
        ``RETRY_PRODUCE_S``; outputs already acknowledged go out twice, which downstream steps drop
        by message id. A producer whose sequence numbers broke in the restart is replaced."""
        delay, deadline = 0.5, time.monotonic() + RETRY_PRODUCE_S
        while True:
            try:
                sends = [await self.producer.send(o.topic, o.value, key=o.key, headers=o.headers) for o in outputs]
                await asyncio.gather(*sends)
                return
            except (TimeoutError, KafkaError) as exc:
                if not _retriable(exc) or time.monotonic() > deadline or self.stopping.is_set():
                    raise
                log.warning("produce_retry", group=self.group_id, error=type(exc).__name__, delay_s=delay)
                if isinstance(exc, PRODUCER_BROKEN):
                    await stop_replaced(self.producer)
                    self.producer = make_producer(self.settings)
                    await self.producer.start()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _watch_invalid(self) -> None:
        """Raise the alarm when a flood of rejections starts (and stop, if so configured)."""
        tripped = self.invalid.tripped()
        if tripped and not self.flooding:
            stopping = self.settings.stop_on_invalid_flood
            log.critical("too_many_invalid", group=self.group_id, rejected=self.invalid.rejected,
                         events=self.invalid.events, limit=self.settings.max_invalid_ratio,
                         note="stopping without producing or committing this batch" if stopping else
                         "dead-lettering them; see failed_events, replay after the fix")
            if stopping:
                raise TooManyInvalid(f"{self.invalid.rejected} of the last {self.invalid.events} events were "
                                     f"rejected (limit {self.settings.max_invalid_ratio:.0%})")
        elif not tripped and self.flooding:
            log.warning("invalid_flood_over", group=self.group_id, rejected=self.invalid.rejected,
                        events=self.invalid.events)
        self.flooding = tripped
        self.flood.set(1 if tripped else 0)

    async def _relay(self, batch: dict) -> None:
        started = time.perf_counter()
        outputs = self.transform([record for records in batch.values() for record in records])
        if self.counts is not None:
            outputs.extend(self.counts.due())
        rejected = sum(o.events for o in outputs if o.dead)
        events = sum(o.events for o in outputs)
        self.invalid.add(events, rejected)
        self._watch_invalid()
        await self._produce(outputs)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance (CommitFailedError), or the broker away
            log.warning("commit_failed", error=str(exc) or type(exc).__name__,
                        note="records will be delivered again")
        self.events_out.inc(events)
        self.dead_letters.inc(rejected)
        log.info("batch", group=self.group_id, records=sum(map(len, batch.values())), events=events,
                 dead_lettered=rejected, ms=round((time.perf_counter() - started) * 1000, 1))
