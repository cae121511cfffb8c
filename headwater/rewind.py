"""Moving a consumer group to a point in time, as ``kafka-consumer-groups --reset-offsets
--to-datetime`` does: for replaying a destination from then (within the topic's retention).

Kafka accepts offsets from outside a group only while the group has no members, so the caller stops
the group's consumers first (a destination is paused) and :func:`rewind_group` waits until the group
is empty. Each partition goes to the first record at or after the time, or to its end when none is.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from headwater.kafka import kafka_connection, make_consumer
from headwater.settings import Settings


class GroupBusy(RuntimeError):
    """The group still had members when the wait ended."""


async def members(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many members the group has (a member that died stays one until its session times out)."""
    described = await admin.describe_consumer_groups([group])
    return sum(len(g["members"]) for response in described for g in response.to_object()["groups"])


async def empty_group_partitions(settings: Settings, group: str, topic: str, timeout_s: float) -> list[int]:
    """Wait until ``group`` has no members; return the partitions of ``topic``."""
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while await members(admin, group):
            if time.monotonic() > deadline:
                raise GroupBusy(f"the consumer group {group} still has members after {timeout_s:.0f} s")
            await asyncio.sleep(0.5)
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])
    finally:
        await admin.close()


async def rewind_group(settings: Settings, group: str, topic: str, from_ms: int,
                       timeout_s: float = 60.0) -> dict[int, int]:
    """Commit, for each partition of ``topic``, the offset of its first record at or after ``from_ms``
    as ``group``'s position; return them by partition."""
    partitions = [TopicPartition(topic, p) for p in await empty_group_partitions(settings, group, topic, timeout_s)]
    if not partitions:
        raise GroupBusy(f"the topic {topic} has no partitions")
    consumer = make_consumer(settings, [], group)
    await consumer.start()
    try:
        consumer.assign(partitions)
        found = await consumer.offsets_for_times({tp: from_ms for tp in partitions})
        ends = await consumer.end_offsets(partitions)
        offsets = {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in partitions}
        await consumer.commit(offsets)
        return {tp.partition: offset for tp, offset in offsets.items()}
    finally:
        await consumer.stop()
