"""The interface every processor implements, and the loop that runs one.

A processor is a pure function of one envelope. :func:`transform_for` wraps it into a relay
transform that decodes the record, calls ``process``, and forwards the result to the next step named
by the routing slip. Each processor runs as its own consumer group, ``headwater-processor-<name>``,
so operators scale it by adding replicas (up to the number of partitions).

Delivery: at-least-once, as in :class:`headwater.relay.Relay`. Output keeps the input key
(``project:visitor``), so each visitor's events stay in order.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from aiokafka.structs import ConsumerRecord

from headwater.envelope import Envelope
from headwater.relay import Output, Rejected, Transform
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

        Must not block: it runs on the event loop, once per event.
        """


def group_id(name: str) -> str:
    return f"headwater-processor-{name}"


def transform_for(processor: Processor) -> Transform:
    settings = processor.settings

    def transform(record: ConsumerRecord) -> list[Output]:
        try:
            envelope = Envelope.decode(record.value)
            step, headers = next_hop(record.headers, processor.name)
        except (ValueError, KeyError, TypeError) as exc:
            raise Rejected("unparseable", str(exc)) from exc
        result = processor.process(envelope)
        if result is None:
            return []
        kept = [(k, v) for k, v in record.headers if k != ROUTE_HEADER]
        return [Output(step_topic(settings, step), record.key, result.encode(), kept + headers)]

    return transform
