"""Tailing a compacted topic into memory: the shared mechanism behind the project store and the
daily salts.

A :class:`TopicTail` reads its topic from the beginning (no consumer group, nothing committed),
hands every record to ``apply``, reports ``loaded`` once it has caught up with the end offsets it saw
at start, and then keeps applying new records as they arrive.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from headwater.kafka import kafka_connection
from headwater.settings import Settings

Apply = Callable[[str, bytes | None], None]


class TopicTail:
    def __init__(self, settings: Settings, topic: str, apply: Apply, isolation_level: str = "read_uncommitted") -> None:
        self.settings = settings
        self.isolation_level = isolation_level  # read_committed for a topic written in transactions
        self.topic = topic
        self.apply = apply
        self.loaded = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start tailing and wait until the topic's current content has been applied."""
        self._consumer = consumer = AIOKafkaConsumer(**kafka_connection(self.settings), enable_auto_commit=False,
                                                        isolation_level=self.isolation_level)
        await consumer.start()
        partitions = [TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or {0})]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._tail(consumer, ends))
        await asyncio.wait_for(self.loaded.wait(), timeout_s)

    async def _tail(self, consumer: AIOKafkaConsumer, ends: dict) -> None:
        if all(offset == 0 for offset in ends.values()):
            self.loaded.set()
        while True:
            polled = await consumer.getmany(timeout_ms=500)
            for records in polled.values():
                for record in records:
                    self.apply(record.key.decode(), record.value)
            if not self.loaded.is_set() and await self._caught_up(consumer, ends):
                self.loaded.set()

    async def _caught_up(self, consumer: AIOKafkaConsumer, ends: dict) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def wait_for(self, check: Callable[[], object], timeout_s: float = 10.0) -> None:
        """Wait until ``check()`` is true, for example after this process wrote a change."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.topic}: the change was not seen in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()
