"""A pipeline consumer with a backlog gets it as fast as the broker can give it: the fetch's minimum
never exceeds what one partition may return, or every fetch would wait ``fetch_max_wait_ms``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from headwater.kafka import kafka_connection, make_consumer, make_producer

pytestmark = pytest.mark.integration

RECORDS, RECORD_BYTES = 150, 10_000  # 1.5 MB that zstd cannot shrink: many fetches of one partition


def test_a_backlog_on_one_partition_is_read_without_waiting_out_each_fetch(stack, settings):
    patient = dataclasses.replace(settings, fetch_max_wait_ms=5000)  # a waited-out fetch is unmistakable

    async def scenario() -> tuple[int, float]:
        topic = f"fetch-test-{uuid.uuid4().hex[:8]}"
        admin = AIOKafkaAdminClient(**kafka_connection(settings))
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])
        await admin.close()
        producer = make_producer(settings)
        await producer.start()
        for _ in range(RECORDS):
            await producer.send(topic, os.urandom(RECORD_BYTES), partition=0)
        await producer.flush()
        await producer.stop()
        consumer = make_consumer(patient, [topic], f"headwater-fetch-test-{uuid.uuid4().hex[:8]}")
        await consumer.start()
        try:
            read, started = 0, time.monotonic()
            while read < RECORDS and time.monotonic() - started < 60:
                batch = await consumer.getmany(timeout_ms=500)
                read += sum(map(len, batch.values()))
            return read, time.monotonic() - started
        finally:
            await consumer.stop()

    read, seconds = asyncio.run(scenario())
    assert read == RECORDS
    # read at once, the backlog takes well under a second; one fetch waiting out its 5 s is a failure
    assert seconds < 4.5, f"{seconds:.1f} s: fetches waited for more bytes than one partition may return"
