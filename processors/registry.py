"""Which class implements each step of the flow."""

from __future__ import annotations

from headwater.flow import PROCESSOR_STEPS
from headwater.partitioning import PartitionMap
from headwater.relay import Relay
from headwater.settings import Settings
from headwater.topics import step_topic
from processors.base import Processor, group_id, transform_for
from processors.passthrough import PassThrough


def build_processor(name: str, settings: Settings) -> Processor:
    if name not in PROCESSOR_STEPS:
        raise ValueError(f"unknown processor {name!r}; the steps are {', '.join(PROCESSOR_STEPS)}")
    return PassThrough(settings, name)


def build_relay(name: str, settings: Settings) -> Relay:
    processor = build_processor(name, settings)
    partitions = PartitionMap()
    return Relay(settings, group_id(name), [step_topic(settings, name)], transform_for(processor, partitions),
                 partitions)
