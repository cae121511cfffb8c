"""Producing accepted events to Kafka: coalesced, durable, bounded in time.

``publish`` returns only once Kafka has acknowledged every given envelope with ``acks=all``.

Events of all requests that arrive in the same turn of the event loop are coalesced: they are
grouped by (project, partition of their ``project:visitor`` key) and each group becomes one Kafka
message holding a list of envelopes. This keeps the per-message cost of the Kafka client off the
per-event path while each visitor's events stay in one partition, in order. A group is closed early
at ``MAX_MESSAGE_BYTES``.

After a broker restart with messages in flight, the idempotent producer's sequence numbers for a
partition can disagree with the broker's (``OutOfOrderSequenceNumber``), and aiokafka then fails every
later send to that partition. The sink replaces its producer (a new producer id starts new sequences);
the messages that failed were never acknowledged, so their requests got 503s and nothing is lost.

When Kafka does not acknowledge within ``produce_timeout_s`` it raises :class:`Unavailable`; the
caller answers 503 and the client retries (a retried event is deduplicated downstream by
``messageId``). An event whose request timed out may still be written later; it was never answered
200, so nothing acknowledged is lost and nothing unacknowledged is promised.
"""

from __future__ import annotations

import asyncio
import dataclasses

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from headwater.envelope import Envelope
from headwater.kafka import PRODUCER_BROKEN, compression_type, make_producer, stop_replaced
from headwater.partitioning import PartitionMap, partition_of
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
from headwater.settings import Settings
from headwater.topics import MAX_MESSAGE_BYTES, raw_topic

log = structlog.get_logger()


def collector_producer(settings: Settings) -> AIOKafkaProducer:
    """The durable producer of :func:`headwater.kafka.make_producer`, with the collector's own linger
    and codec."""
    return make_producer(settings, linger_ms=settings.collector_linger_ms,
                         compression_type=compression_type(settings, "collector_compression"))


class Unavailable(Exception):
    """Kafka did not acknowledge in time."""


@dataclasses.dataclass
class PendingMessage:
    project_id: str
    key: bytes
    parts: list[bytes] = dataclasses.field(default_factory=list)
    size: int = 2
    done: asyncio.Future = dataclasses.field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def value(self) -> bytes:
        return b"[" + b",".join(self.parts) + b"]"


class KafkaSink:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer, partitions: PartitionMap) -> None:
        self.settings = settings
        self.replacing: asyncio.Task | None = None
        self.topic = raw_topic(settings)
        self.timeout_s = settings.produce_timeout_s
        self.producer = producer
        self.partitions = partitions
        self.open: dict[tuple[str, int], PendingMessage] = {}
        self.flush_scheduled = False

    async def publish(self, envelopes: list[Envelope]) -> None:
        """Return once Kafka acknowledged every envelope; raise :class:`Unavailable` when it failed or
        took longer than ``produce_timeout_s``. A message holds the envelopes of many requests, so a
        request that gives up leaves it to the others (shielded, never cancelled)."""
        waits = {self._add(envelope) for envelope in envelopes}
        try:
            async with asyncio.timeout(self.timeout_s):
                for done in waits:
                    await asyncio.shield(done)
        except (TimeoutError, KafkaError) as exc:
            raise Unavailable(str(exc) or type(exc).__name__) from exc

    def _add(self, envelope: Envelope) -> asyncio.Future:
        key = envelope.key()
        slot = (envelope.project_id, partition_of(key, self.partitions.counts[self.topic]))
        encoded = envelope.encode()
        message = self.open.get(slot)
        if message is None or message.size + len(encoded) > MAX_MESSAGE_BYTES:
            if message is not None:
                self._send(message)
            message = self.open[slot] = PendingMessage(envelope.project_id, key)
        message.parts.append(encoded)
        message.size += len(encoded) + 1
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return message.done

    def _flush(self) -> None:
        self.flush_scheduled = False
        messages, self.open = self.open, {}
        for message in messages.values():
            self._send(message)

    def _send(self, message: PendingMessage) -> None:
        # Requests that gave up waiting no longer read the outcome; mark it read so it is not logged.
        message.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        asyncio.ensure_future(self._produce(message))

    async def _produce(self, message: PendingMessage) -> None:
        try:
            delivery = await self.producer.send(
                self.topic, message.value(), key=message.key,
                headers=[(PROJECT_HEADER, message.project_id.encode()),
                         (EVENTS_HEADER, str(len(message.parts)).encode())],
            )
            await delivery
            message.done.set_result(None)
        except Exception as exc:  # handed to every request waiting on this message
            message.done.set_exception(exc)
            if isinstance(exc, PRODUCER_BROKEN) and self.replacing is None:
                self.replacing = asyncio.ensure_future(self._replace_producer(exc))

    async def _replace_producer(self, reason: Exception) -> None:
        log.warning("producer_replaced", reason=type(reason).__name__)
        try:
            fresh = collector_producer(self.settings)
            await fresh.start()
            old, self.producer = self.producer, fresh
            await stop_replaced(old)
        except KafkaError as exc:  # Kafka still away: the next failure tries again
            log.warning("producer_replace_failed", error=str(exc))
        finally:
            self.replacing = None

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2)
            return True
        except (TimeoutError, KafkaError, OSError):
            return False
