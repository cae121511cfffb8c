"""The interface every processor implements, and the transform that runs one over Kafka records.

A processor is a function of one envelope. :func:`transform_for` wraps it into a relay transform:
decode the record's batch of envelopes, call ``process`` on each, send an event it rejects to the
dead-letter topic on its own (typed reason, field path, original event), and forward the rest to the
next step named by the routing slip, regrouped by the partition of their (possibly changed)
``project:visitor`` key. Each processor runs as its own consumer group, ``headwater-processor-<name>``,
so operators scale it by adding replicas (up to the number of partitions).

Delivery and commit semantics are those of :class:`headwater.relay.Relay`: at-least-once, offsets
committed only after every output was acknowledged, a flood of rejections stops the process.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.partitioning import PartitionMap
from headwater.relay import Transform
from headwater.relay_types import Output
from headwater.routing import ROUTE_HEADER, next_hop
from headwater.settings import Settings
from headwater.topics import step_topic


class Processor(abc.ABC):
    """One step of the flow."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def process(self, envelope: Envelope) -> Envelope | None:
        """Return the envelope (changed or not), ``None`` to drop it, or raise ``Rejected``.

        Runs on the event loop once per event, so it must not block.
        """


def group_id(name: str) -> str:
    return f"headwater-processor-{name}"


def transform_for(processor: Processor, partitions: PartitionMap) -> Transform:
    settings = processor.settings

    def transform(record: ConsumerRecord) -> list[Output]:
        try:
            envelopes = decode_batch(record.value)
            step, route = next_hop(record.headers, processor.name)
        except ValueError as exc:
            raise Rejected("unparseable", str(exc)) from exc
        outputs, kept = [], []
        for envelope in envelopes:
            try:
                result = processor.process(envelope)
            except Rejected as error:
                outputs.append(dead_letter(settings, record, error, processor.name, envelope))
                continue
            if result is not None:
                kept.append(result)
        topic = step_topic(settings, step)
        headers = [(k, v) for k, v in record.headers if k != ROUTE_HEADER] + route
        for group in partitions.group(kept, topic):
            outputs.append(Output(topic, group[0].key(), encode_batch(group), headers, events=len(group)))
        return outputs

    return transform
