"""Lag measured at the broker: it keeps growing while a group has no consumer, and its commits stand
still until one reads again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client import CollectorRegistry

from headwater.group_lag import GroupLag
from headwater.kafka import kafka_connection

pytestmark = pytest.mark.integration


async def measure(settings, group: str) -> tuple[float, float]:
    """One pass of the exporter: the group's lag and the sum of its commits."""
    registry = CollectorRegistry()
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    reader = AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False)
    await admin.start()
    await reader.start()
    try:
        totals = await GroupLag(registry).update(admin, reader)
    finally:
        await reader.stop()
        await admin.close()
    assert totals[group] == registry.get_sample_value("headwater_group_lag_total", {"group": group})
    return totals[group], registry.get_sample_value("headwater_group_committed_offsets", {"group": group})


def test_lag_grows_while_a_group_has_no_consumer_and_its_commits_stand_still(stack, settings):
    async def scenario():
        name = uuid.uuid4().hex[:8]
        group, topic = f"headwater-lag-test-{name}", f"lag-test-{name}"  # a topic no role reads
        admin = AIOKafkaAdminClient(**kafka_connection(settings))
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        tp = TopicPartition(topic, 0)
        producer = AIOKafkaProducer(**kafka_connection(settings))
        await producer.start()
        consumer = AIOKafkaConsumer(**kafka_connection(settings), group_id=group, enable_auto_commit=False)
        await consumer.start()
        consumer.assign([tp])
        await producer.send_and_wait(topic, b"{}", partition=0)
        await consumer.commit({tp: 1})  # the group is caught up, then its consumer goes away
        await consumer.stop()
        assert await measure(settings, group) == (0, 1)
        for _ in range(25):
            await producer.send_and_wait(topic, b"{}", partition=0)
        assert await measure(settings, group) == (25, 1)  # nobody reads: the lag grows, the commits stand
        for _ in range(5):
            await producer.send_and_wait(topic, b"{}", partition=0)
        await producer.stop()
        assert await measure(settings, group) == (30, 1)

        reader = AIOKafkaConsumer(**kafka_connection(settings), group_id=group, enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign([tp])
            await reader.commit({tp: 31})  # a consumer is back and has caught up
        finally:
            await reader.stop()
        assert await measure(settings, group) == (0, 31)

    asyncio.run(scenario())
