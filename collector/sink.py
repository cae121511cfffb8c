"""Producing accepted events to Kafka, bounded in time.

``publish`` returns only once Kafka has acknowledged every envelope with ``acks=all``. Many concurrent
requests share the producer's batches (``linger_ms``), so durable acks stay cheap. When Kafka does
not acknowledge within ``produce_timeout_s`` it raises :class:`Unavailable`; the caller answers 503
and the client retries (a retried event is deduplicated downstream by ``messageId``).
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from headwater.envelope import Envelope
from headwater.routing import PROJECT_HEADER
from headwater.settings import Settings
from headwater.topics import raw_topic


class Unavailable(Exception):
    """Kafka did not acknowledge in time."""


class KafkaSink:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.topic = raw_topic(settings)
        self.timeout_s = settings.produce_timeout_s
        self.producer = producer

    async def _send_all(self, envelopes: list[Envelope]) -> None:
        pending = [
            await self.producer.send(
                self.topic, e.encode(), key=e.key(), headers=[(PROJECT_HEADER, e.project_id.encode())]
            )
            for e in envelopes
        ]
        await asyncio.gather(*pending)

    async def publish(self, envelopes: list[Envelope]) -> None:
        try:
            await asyncio.wait_for(self._send_all(envelopes), self.timeout_s)
        except (asyncio.TimeoutError, KafkaError) as exc:
            raise Unavailable(str(exc) or type(exc).__name__) from exc

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2)
            return True
        except (asyncio.TimeoutError, KafkaError, OSError):
            return False
