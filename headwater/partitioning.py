"""Which partition an event belongs to, and grouping events into one message per partition.

The partition of an event is Kafka's default for its key ``project:visitor``:
``murmur2(key) & 0x7fffffff % partitions``. A message holding a group carries the key of its first
event, so the producer's default partitioner sends it to the partition every event in it belongs to.
Every pipeline topic has the same partition count (``topic_partitions``), so a record's events that
share a partition on one topic share it on the next.
"""

from __future__ import annotations

import functools

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2


@functools.lru_cache(maxsize=65_536)  # aiokafka's murmur2 is pure Python: 2.4 µs a key; visitors recur
def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionMap:
    """Partition counts of the topics a role produces to, read from the cluster at start."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    async def load(self, producer: AIOKafkaProducer, topics: list[str]) -> None:
        for topic in topics:
            self.counts[topic] = len(await producer.partitions_for(topic))
