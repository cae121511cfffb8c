"""``headwater replay``: re-inject dead letters once the schema or the data is fixed.

It reads the dead-letter topic in its own consumer group (``headwater-replay-<project>``), from where the last
replay stopped up to the end it sees at start, and takes the records that match ``--project`` (and
``--reason``), except those a destination refused (replayed with ``--destination``, forwarder/replay.py).
Each event is checked again by the validate step as it is configured now (the
command that runs the replay gives it: :class:`Revalidator`):

- valid: it goes back to the raw topic and through its project's whole flow (duplicates of events
  that did arrive earlier are removed by ``messageId`` in ClickHouse);
- still invalid: ``--on-error stop`` stops before it (nothing after it is committed, so a later run
  starts there), ``skip`` passes over it, ``dead-letter`` writes it to the dead-letter topic again
  with the new reason.

Offsets are committed after the re-injected events are acknowledged by Kafka.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import Envelope, encode_batch
from headwater.kafka import make_consumer, make_producer
from headwater.projects.store import ProjectStore
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
from headwater.settings import Settings
from headwater.topics import dead_letter_topic, raw_topic

POLICIES = ("stop", "skip", "dead-letter")
DESTINATION_STEP_PREFIX = "forward:"  # the dead letters of destinations (forwarder/replay.py)


class Check(Protocol):
    def process(self, envelope: Envelope) -> Envelope | None:
        """Return the envelope, or raise ``Rejected`` when it is still invalid."""


Revalidator = Callable[[Settings, ProjectStore], Check]  # the validate step, built on the replay's project store


@dataclasses.dataclass
class ReplayReport:
    matched: int = 0
    replayed: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    stopped_at: str | None = None


class Replayer:
    def __init__(self, settings: Settings, project_id: str, reason: str | None, on_error: str,
                 revalidator: Revalidator) -> None:
        self.settings, self.project_id, self.reason, self.on_error = settings, project_id, reason, on_error
        self.store = ProjectStore(settings)
        self.validate = revalidator(settings, self.store)
        # One group per project: a replay of one project never moves another project's position.
        self.consumer = make_consumer(settings, [dead_letter_topic(settings)], f"headwater-replay-{project_id}")
        self.producer = make_producer(settings)
        self.report = ReplayReport()

    async def run(self) -> ReplayReport:
        await self.producer.start()
        await self.store.start()
        await self.consumer.start()
        try:
            ends = await end_offsets(self.consumer)
            while not await reached(self.consumer, ends):
                polled = await self.consumer.getmany(timeout_ms=1000, max_records=500)
                for tp, records in polled.items():
                    for record in records:
                        if record.offset >= ends.get(tp, 0):
                            continue
                        if not await self._replay(record):
                            return self.report
                        await self.consumer.commit({tp: record.offset + 1})
            return self.report
        finally:
            await self.consumer.stop()
            await self.store.stop()
            await self.producer.stop()

    async def _replay(self, record) -> bool:
        """Handle one dead letter; False means stop here."""
        dead = orjson.loads(record.value)
        if dead.get("project_id") != self.project_id or (self.reason and dead.get("reason") != self.reason):
            return True
        if str(dead.get("step", "")).startswith(DESTINATION_STEP_PREFIX):
            return True  # a destination refused it, not the pipeline: replayed with --destination
        self.report.matched += 1
        envelope = None
        try:
            envelope = Envelope.from_dict(dead.get("payload"))
            self.validate.process(envelope)
        except (ValueError, Rejected) as exc:
            error = exc if isinstance(exc, Rejected) else Rejected("unparseable", str(exc))
            return await self._still_invalid(record, error, envelope)
        await self.producer.send_and_wait(raw_topic(self.settings), encode_batch([envelope]), key=envelope.key(),
                                          headers=[(PROJECT_HEADER, envelope.project_id.encode()),
                                                   (EVENTS_HEADER, b"1")])
        self.report.replayed += 1
        return True

    async def _still_invalid(self, record, error: Rejected, envelope: Envelope | None) -> bool:
        if self.on_error == "stop":
            self.report.stopped_at = f"{record.topic}/{record.partition}/{record.offset}: {error}"
            return False
        if self.on_error == "skip":
            self.report.skipped += 1
            return True
        out = dead_letter(self.settings, record, error, "replay", envelope)
        await self.producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
        self.report.dead_lettered += 1
        return True


async def end_offsets(consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
    """The end of each partition assigned to ``consumer`` (waiting for its assignment): where a replay
    of what is there now stops."""
    while not consumer.assignment():
        await asyncio.sleep(0.1)
    return await consumer.end_offsets(list(consumer.assignment()))


async def reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has read every partition up to ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def run_replay(settings: Settings, project_id: str, reason: str | None, on_error: str,
               revalidator: Revalidator) -> ReplayReport:
    async def replay() -> ReplayReport:  # Kafka clients must be made inside the running loop
        return await Replayer(settings, project_id, reason, on_error, revalidator).run()

    return asyncio.run(replay())

