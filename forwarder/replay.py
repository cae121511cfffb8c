"""``headwater replay --project P --destination NAME``: deliver a destination's dead letters again once
the destination (or its definition) is fixed.

It reads the dead-letter topic in its own consumer group (``headwater-replay-<project>-forward-<name>``),
from where the last replay of that destination stopped up to the end it sees at start, and takes the
dead letters the destination wrote (step ``forward:<name>``). Each event goes through the destination's
condition and transformation as they are defined now, and the events are delivered in batches the way
the forwarder delivers them. A batch that still cannot be delivered after a few retries stops the replay
(nothing after it is committed, so the next run starts there); a batch refused again is handled by
``--on-error``: ``stop`` (the default), ``skip``, or ``dead-letter`` (written again, with the new reason).
A destination's Python transformation that fails on one stops the replay there.
Offsets are committed after each batch is delivered. At least once, like the forwarder.

A lake is not replayed this way: its files are named by the events' places in the index topic, so a
lake is replayed from a point in time (``headwater project replay-destination``), exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
from aiokafka.structs import ConsumerRecord

from forwarder.outcomes import Delivered, Item, Refused
from forwarder.registry import make_destination
from forwarder.service import FORWARD_STEP, batch_id, python_events
from headwater.deadletter import Rejected, dead_letter
from headwater.destinations import DestinationSpec, parse_destinations
from headwater.envelope import Envelope
from headwater.kafka import make_consumer, make_producer
from headwater.plugins import Plugin, installed
from headwater.projects.store import ProjectStore
from headwater.replay import end_offsets, reached
from headwater.settings import Settings
from headwater.topics import dead_letter_topic

ATTEMPTS = 5


class ReplayError(ValueError):
    """The destination cannot be replayed this way (no such destination, or a lake)."""


@dataclasses.dataclass
class DestinationReplayReport:
    matched: int = 0
    delivered: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    not_selected: int = 0  # the destination's condition or transformation no longer sends them
    stopped_at: str | None = None


class DestinationReplayer:
    def __init__(self, settings: Settings, project_id: str, name: str, on_error: str) -> None:
        self.settings, self.project_id, self.name, self.on_error = settings, project_id, name, on_error
        self.store = ProjectStore(settings)
        self.consumer = make_consumer(settings, [dead_letter_topic(settings)],
                                      f"headwater-replay-{project_id}-{FORWARD_STEP}-{name}")
        self.producer = make_producer(settings)
        self.report = DestinationReplayReport()
        self.plugin: Plugin | None = None

    def spec(self) -> DestinationSpec:
        project = self.store.get(self.project_id)
        specs = {s.name: s for s in parse_destinations(self.project_id, project.destinations)} if project else {}
        if self.name not in specs:
            raise ReplayError(f"project {self.project_id} has no destination {self.name!r}")
        if specs[self.name].type == "lake":
            raise ReplayError("a lake is replayed from a point in time: headwater project replay-destination")
        return specs[self.name]

    async def run(self) -> DestinationReplayReport:
        await self.producer.start()
        await self.store.start()
        destination = make_destination(self.spec(), self.settings)
        if self.spec().python:
            self.plugin = installed(self.settings.transforms_dir)[0].get(self.spec().python or "")
        await destination.start()
        await self.consumer.start()
        try:
            ends = await end_offsets(self.consumer)
            while not await reached(self.consumer, ends):
                polled = await self.consumer.getmany(timeout_ms=1000, max_records=self.spec().max_events)
                for tp, records in polled.items():
                    wanted = [r for r in records if r.offset < ends.get(tp, 0)]
                    if wanted and not await self._replay(destination, wanted):
                        return self.report
                    if wanted:
                        await self.consumer.commit({tp: wanted[-1].offset + 1})
            return self.report
        finally:
            await self.consumer.stop()
            await destination.stop()
            await self.store.stop()
            await self.producer.stop()

    def _items(self, records: list[ConsumerRecord]) -> list[tuple[Item, ConsumerRecord, Envelope]]:
        spec, found = self.spec(), []
        for record in records:
            dead = orjson.loads(record.value)
            if dead.get("project_id") != self.project_id or dead.get("step") != f"{FORWARD_STEP}:{self.name}":
                continue
            self.report.matched += 1
            envelope = Envelope.from_dict(dead["payload"])
            event = spec.select(orjson.loads(orjson.dumps(envelope.event)))
            events: list[dict | None] = [event]
            if event is not None and spec.python:
                events = python_events(spec, self.plugin, envelope, event, self.settings)  # Rejected: stop here
            if events == [None]:
                self.report.not_selected += 1
                continue
            found += [(Item(out, envelope.visitor_id, envelope.received_at_ms, record.partition, record.offset, 0),
                       record, envelope) for out in events if out is not None]
        return found

    async def _replay(self, destination, records: list[ConsumerRecord]) -> bool:
        """Deliver the dead letters of ``records``; False means stop before them."""
        try:
            found = self._items(records)
        except Rejected as error:  # the destination's Python transformation failed on one
            first = records[0]
            self.report.stopped_at = f"{first.topic}/{first.partition}/{first.offset}: {error}"
            return False
        if not found:
            return True
        items = [item for item, _, _ in found]
        outcome, backoff = None, 0.5
        for _ in range(ATTEMPTS):
            outcome = await destination.deliver(items, batch_id(self.spec(), items))
            if isinstance(outcome, (Delivered, Refused)):
                break
            await asyncio.sleep(max(backoff, outcome.after_s))
            backoff *= 2
        if isinstance(outcome, Delivered):
            self.report.delivered += len(items)
            return True
        reason = getattr(outcome, "reason", "")
        if self.on_error == "stop" or not isinstance(outcome, Refused):
            first = found[0][1]
            self.report.stopped_at = f"{first.topic}/{first.partition}/{first.offset}: {reason}"
            return False
        if self.on_error == "skip":
            self.report.skipped += len(items)
            return True
        for _, record, envelope in found:
            out = dead_letter(self.settings, record, Rejected("destination_refused", reason),
                              f"{FORWARD_STEP}:{self.name}", envelope)
            await self.producer.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
        self.report.dead_lettered += len(items)
        return True


def run_destination_replay(settings: Settings, project_id: str, name: str, on_error: str) -> DestinationReplayReport:
    async def replay() -> DestinationReplayReport:  # Kafka clients must be made inside the running loop
        return await DestinationReplayer(settings, project_id, name, on_error).run()

    return asyncio.run(replay())
