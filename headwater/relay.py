"""The consume -> transform -> produce -> commit loop that the mediator and every processor run.

Delivery is at-least-once. Offsets of a polled batch are committed only after every record the batch
produced has been acknowledged by Kafka (``acks=all``). A crash between produce and commit delivers
the batch again, so downstream may see a record twice; the indexer removes such duplicates. A record
the transform rejects goes to the dead-letter topic with a typed reason and never blocks its
partition.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Callable

import structlog
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from headwater.kafka import make_consumer, make_producer
from headwater.partitioning import PartitionMap
from headwater.routing import Headers
from headwater.settings import Settings
from headwater.topics import dead_letter_topic, topic_specs

log = structlog.get_logger()
ERROR_HEADER = "hw-error"


class Rejected(Exception):
    """A record (or one event of it) that must go to the dead-letter topic.

    ``reason`` is a short machine-readable kind (for example ``unparseable``); ``detail`` explains it;
    ``path`` names the offending field when there is one.
    """

    def __init__(self, reason: str, detail: str = "", path: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.path = path


@dataclasses.dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


Transform = Callable[[ConsumerRecord], list[Output]]


def dead_letter(settings: Settings, record: ConsumerRecord, error: Rejected, value: bytes | None = None) -> Output:
    """A dead-letter record: the original bytes (or ``value``, one event of the record), the typed
    reason, and where it came from."""
    headers = [
        *(record.headers or ()),
        (ERROR_HEADER, error.reason.encode()),
        ("hw-error-detail", error.detail.encode()[:1024]),
        ("hw-error-path", error.path.encode()),
        ("hw-origin", f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]
    return Output(dead_letter_topic(settings), record.key, record.value if value is None else value, headers)


class Relay:
    """Runs one consumer group over ``topics`` and forwards what ``transform`` returns.

    ``partitions`` is loaded with every topic's partition count before the first record is read, so
    transforms can group their output by partition.
    """

    def __init__(self, settings: Settings, group_id: str, topics: list[str], transform: Transform,
                 partitions: PartitionMap) -> None:
        self.settings = settings
        self.group_id = group_id
        self.transform = transform
        self.partitions = partitions
        self.consumer = make_consumer(settings, topics, group_id)
        self.producer = make_producer(settings)
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        await self.producer.start()
        await self.partitions.load(self.producer, [spec.name for spec in topic_specs(self.settings)])
        await self.consumer.start()
        try:
            while not self.stopping.is_set():
                batch = await self.consumer.getmany(timeout_ms=200, max_records=2000)
                if batch:
                    await self._relay(batch)
        finally:
            await self.consumer.stop()
            await self.producer.stop()

    def stop(self) -> None:
        self.stopping.set()

    def _outputs(self, record: ConsumerRecord) -> list[Output]:
        try:
            return self.transform(record)
        except Rejected as error:
            return [dead_letter(self.settings, record, error)]

    async def _relay(self, batch: dict) -> None:
        started = time.perf_counter()
        outputs = [out for records in batch.values() for record in records for out in self._outputs(record)]
        sends = [
            await self.producer.send(o.topic, o.value, key=o.key, headers=o.headers) for o in outputs
        ]
        await asyncio.gather(*sends)
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit_failed", error=str(exc), note="records will be delivered again")
        dead_topic = dead_letter_topic(self.settings)
        log.info(
            "batch", group=self.group_id, records=sum(map(len, batch.values())), produced=len(outputs),
            dead_lettered=sum(1 for o in outputs if o.topic == dead_topic),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
