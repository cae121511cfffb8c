"""The interface every processor implements, and the transform that runs one over Kafka records.

A processor is a function of one envelope. :func:`transform_for` wraps it into a relay transform:
decode every record of a poll, call ``process`` on each event, send an event it rejects to the
dead-letter topic on its own (typed reason, field path, original event), and forward the rest to the
next step named by the routing slip. The forwarded events are regrouped by project, route and the
partition of their (possibly changed) ``project:visitor`` key, so many small input records become a
few large output records, each event keeping its order. Each processor runs as its own consumer
group, ``headwater-processor-<name>`` (:func:`headwater.topics.processor_group`), so operators scale
it by adding replicas (up to the number of partitions).

Delivery and commit semantics are those of :class:`headwater.relay.Relay`: at-least-once, offsets
committed only after every output was acknowledged; a flood of rejections raises the alarm (and stops
the process only with ``stop_on_invalid_flood``).
"""

from __future__ import annotations

import abc
from collections import defaultdict
from typing import ClassVar

import orjson
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from headwater.consuming import Resource
from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.flow import VISIT_READERS
from headwater.partitioning import PartitionMap, partition_of
from headwater.projects.store import ProjectStore
from headwater.relay import Transform
from headwater.relay_types import Output
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, VISITS_HEADER, encode_route, route_from, step_kind
from headwater.settings import Settings
from headwater.step_counts import StepCounts
from headwater.topics import MAX_MESSAGE_BYTES, step_topic
from processors.sessions import visit

SAMPLE_EVENTS = 32  # encoded to estimate a large group's size before it is cut


class Processor(abc.ABC):
    """One step of the flow."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def build(cls, settings: Settings, store: ProjectStore) -> tuple[Processor, tuple[Resource, ...]]:
        """The step on ``store``, and the resources it needs started besides the store."""
        return cls(settings, store), ()  # type: ignore[call-arg]

    @abc.abstractmethod
    def process(self, envelope: Envelope) -> Envelope | list[Envelope] | None:
        """Return the envelope (changed or not), ``None`` to drop it, or raise ``Rejected``. A step
        that splits events (a transform) returns a list.

        Runs on the event loop once per event, so it must not block.
        """

    def bound(self, slip_name: str) -> Processor:
        """What runs the routing slip's entry ``slip_name`` (one of this step's): the processor itself,
        or, for a step with named instances (``transform:NAME``), that instance."""
        return self

    def register(self, registry: CollectorRegistry) -> None:
        """Register the step's own metrics (beside the relay's) on the process's registry."""
        return None


def _through(steps: list[Processor], envelope: Envelope, reject, fates: list[list[int]],
             start: int = 0) -> Envelope | list[Envelope] | None:
    """Run the envelope through ``steps`` from ``start``; a rejection goes to ``reject(step, error,
    envelope as that step was given it)`` and ends the event's way here. ``fates[i]`` counts what step
    ``i`` did other than pass one event on: ``[dropped, dead-lettered, extra events from splits]``."""
    for i in range(start, len(steps)):
        step = steps[i]
        try:
            result = step.process(envelope)
        except Rejected as error:
            fates[i][1] += 1
            reject(step, error, envelope)
            return None
        if not result:  # None, or split into nothing
            fates[i][0] += 1
            return None
        if isinstance(result, list):
            fates[i][2] += len(result) - 1
            return [out for split in result for out in _listed(_through(steps, split, reject, fates, i + 1))]
        envelope = result
    return envelope


class Tallies:
    """What the steps did in one poll, per project and slip: the events that came in, and each step's
    fates (see :func:`_through`). Counted per poll, not per record, to cost next to nothing per record."""

    def __init__(self) -> None:
        self.by_slip: dict[tuple[str, tuple[str, ...]], tuple[list[int], list[list[int]]]] = {}

    def fates(self, project_id: str, slip_names: tuple[str, ...], events: int) -> list[list[int]]:
        """The fates of the steps ``slip_names`` for ``events`` more events of ``project_id``."""
        entry = self.by_slip.get((project_id, slip_names))
        if entry is None:
            entry = self.by_slip[(project_id, slip_names)] = ([0], [[0, 0, 0] for _ in slip_names])
        entry[0][0] += events
        return entry[1]

    def add_to(self, counts: StepCounts) -> None:
        """Add each step's events in and out, dropped and dead-lettered: what one gives out, the next
        takes in."""
        for (project_id, slip_names), ([events], fates) in self.by_slip.items():
            for slip_name, (dropped, dead, extra) in zip(slip_names, fates):
                out = events - dropped - dead + extra
                counts.add(project_id, slip_name, events, out, dropped, dead)
                events = out


def _listed(result: Envelope | list[Envelope] | None) -> list[Envelope]:
    return [] if result is None else result if type(result) is list else [result]  # type: ignore[list-item]


def encode_groups(topic: str, route: tuple[str, ...], envelopes: list[Envelope]) -> list[Output]:
    """Output records of at most about ``MAX_MESSAGE_BYTES`` for the group, each event encoded once.

    A poll's group can hold thousands of events (megabytes). Encoding it whole and halving until the
    halves fit would encode each event five or six times (6–7 µs an event in the stateless steps and
    the sessionizer). The group is cut up front instead, by the encoded size of a sample spread over
    it; a piece that still comes out too large is halved."""
    if len(envelopes) <= SAMPLE_EVENTS:
        return _fitted(topic, route, envelopes)
    sample = envelopes[::len(envelopes) // SAMPLE_EVENTS]
    per_event = len(encode_batch(sample)) / len(sample)
    size = max(1, int(MAX_MESSAGE_BYTES * 0.8 / per_event))
    return [out for start in range(0, len(envelopes), size)
            for out in _fitted(topic, route, envelopes[start:start + size])]


def _fitted(topic: str, route: tuple[str, ...], envelopes: list[Envelope]) -> list[Output]:
    """One output record for the envelopes, or two halves (recursively) when it would be too large."""
    value = encode_batch(envelopes)
    if len(value) > MAX_MESSAGE_BYTES and len(envelopes) > 1:
        half = len(envelopes) // 2
        return _fitted(topic, route, envelopes[:half]) + _fitted(topic, route, envelopes[half:])
    headers = [(PROJECT_HEADER, envelopes[0].project_id.encode()), (EVENTS_HEADER, str(len(envelopes)).encode()),
               *encode_route(route)]
    if route[0] in VISIT_READERS:
        headers.append((VISITS_HEADER, orjson.dumps([visit(envelope) for envelope in envelopes])))
    return [Output(topic, envelopes[0].key(), value, headers, events=len(envelopes))]


def transform_for(processor: Processor, partitions: PartitionMap, colocated: dict[str, Processor] | None = None,
                  counts: StepCounts | None = None) -> Transform:
    """The relay transform of ``processor``'s topic. ``colocated`` are later steps running in the same
    process: an event whose routing slip continues with them passes through them here, in flow order,
    instead of through their topics (one decode and encode, and one Kafka hop, for all of them).
    What each step did to each record's events is added to ``counts``."""
    # a step with named instances (transform:a, transform:b) runs those that follow each other here too
    settings, local = processor.settings, {**(colocated or {}), processor.name: processor}

    def transform(records: list[ConsumerRecord]) -> list[Output]:
        outputs: list[Output] = []
        groups: dict[tuple, list[Envelope]] = defaultdict(list)
        tallies = Tallies() if counts is not None else None
        for record in records:
            try:
                route = route_from(record.headers, processor.name)
                envelopes = decode_batch(record.value)
            except ValueError as exc:
                outputs.append(dead_letter(settings, record, Rejected("unparseable", str(exc)), processor.name))
                continue
            steps, rest = [processor.bound(route[0])], route[1:]
            while len(rest) > 1 and step_kind(rest[0]) in local:  # a slip always ends past them (index)
                steps.append(local[step_kind(rest[0])].bound(rest[0]))
                rest = rest[1:]
            fates = tallies.fates(envelopes[0].project_id, route[:len(steps)], len(envelopes)) \
                if tallies and envelopes else [[0, 0, 0]] * len(steps)  # not counted: scratch
            topic = step_topic(settings, step_kind(rest[0]))
            count = partitions.counts[topic]

            def reject(step: Processor, error: Rejected, given: Envelope, record=record) -> None:
                outputs.append(dead_letter(settings, record, error, step.name, given))

            for envelope in envelopes:
                result = _through(steps, envelope, reject, fates)
                if result is None:
                    continue
                for out in (result if type(result) is list else (result,)):
                    slot = (topic, rest, out.project_id, partition_of(out.key(), count))  # type: ignore[union-attr]
                    groups[slot].append(out)  # type: ignore[arg-type]
        for (topic, rest, _, _), envelopes in groups.items():
            outputs.extend(encode_groups(topic, rest, envelopes))
        if counts is not None and tallies is not None:
            tallies.add_to(counts)
        return outputs

    return transform
