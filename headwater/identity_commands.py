"""Commands to the identity role, and waiting until they are applied and loaded.

``headwater.identity-commands`` (one partition) carries two kinds of record, applied by the role in its
transaction in the order they were written:

- an **erase** (:func:`headwater.identity.erase_command`): forget every id of the persons named;
- a **remerge**: a batch of stored envelopes (``[...]``, the format of ``headwater.step.index``) whose
  ``identify`` and ``alias`` calls are applied by the same rules as live ones (``headwater remerge``).

:func:`send_and_wait` returns once the role has committed past the last command and the ``person_ids``
indexer has loaded the changelog up to where it stood then, so the commands' effects are in ClickHouse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from headwater.kafka import kafka_connection, make_producer
from headwater.settings import Settings
from headwater.topics import IDENTITY_GROUP, PERSON_IDS_INDEXER_GROUP, identity_commands_topic, identity_topic

APPLIED = "applied"
PENDING = "pending"  # the role (or the person_ids indexer) did not get there in time: it will when it runs


async def send_and_wait(settings: Settings, commands: Iterable[bytes], timeout_s: float) -> str:
    """Write ``commands`` in order and wait up to ``timeout_s`` for them to be applied and loaded:
    :data:`APPLIED`, or :data:`PENDING`."""
    producer = make_producer(settings)
    await producer.start()
    last = -1
    try:
        topic = identity_commands_topic(settings)
        sends = [await producer.send(topic, value, partition=0) for value in commands]
        for sent in sends:
            last = (await sent).offset
    finally:
        await producer.stop()
    if last < 0:
        return APPLIED
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    await admin.start()
    try:
        commands_tp = TopicPartition(identity_commands_topic(settings), 0)
        if not await committed_past(admin, IDENTITY_GROUP, commands_tp, last + 1, deadline):
            return PENDING
        changelog = TopicPartition(identity_topic(settings), 0)
        end = await end_offset(settings, changelog)
        loaded = await committed_past(admin, PERSON_IDS_INDEXER_GROUP, changelog, end, deadline)
        return APPLIED if loaded else PENDING
    finally:
        await admin.close()


async def committed_past(admin: AIOKafkaAdminClient, group: str, tp: TopicPartition, offset: int,
                         deadline: float) -> bool:
    """Whether ``group`` commits ``offset`` or later on ``tp`` before ``deadline`` (monotonic)."""
    while time.monotonic() < deadline:
        committed = await admin.list_consumer_group_offsets(group, partitions=[tp])
        if tp in committed and committed[tp].offset >= offset:
            return True
        await asyncio.sleep(0.2)
    return False


async def end_offset(settings: Settings, tp: TopicPartition) -> int:
    """The end of ``tp`` as a transactional reader sees it (after the last committed record)."""
    reader = AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False, isolation_level="read_committed")
    await reader.start()
    try:
        return (await reader.end_offsets([tp]))[tp]
    finally:
        await reader.stop()
