"""The project store: an in-memory view of the compacted projects topic, kept current by tailing it.

Every replica of every role that needs projects runs one :class:`ProjectStore`. It reads the topic
from the beginning (no consumer group, nothing committed), reports ``loaded`` once it has caught up
with the end offsets it saw at start, and then applies each new record as it arrives, so a change made
through the admin API or CLI is visible everywhere within a second.

:class:`ProjectWriter` writes a project's whole record (last write wins) with ``acks=all``.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from headwater.kafka import make_producer
from headwater.projects.model import Key, Project, key_hash
from headwater.settings import Settings
from headwater.topics import projects_topic

log = structlog.get_logger()


class ProjectStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = projects_topic(settings)
        self.projects: dict[str, Project] = {}
        self.by_key_hash: dict[str, tuple[Project, Key]] = {}
        self.loaded = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    def get(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def find_key(self, key: str) -> tuple[Project, Key] | None:
        return self.by_key_hash.get(key_hash(key))

    def apply(self, project_id: str, value: bytes | None) -> None:
        """Apply one record of the topic: a project's whole state, or a tombstone."""
        old = self.projects.pop(project_id, None)
        if old:
            for key in old.keys:
                self.by_key_hash.pop(key.hash, None)
        if value is None:
            return
        project = Project.from_dict(orjson.loads(value))
        self.projects[project_id] = project
        for key in project.keys:
            self.by_key_hash[key.hash] = (project, key)

    async def start(self, timeout_s: float = 30.0) -> None:
        """Start tailing and wait until the current state is loaded."""
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                          enable_auto_commit=False)
        await self._consumer.start()
        partitions = [TopicPartition(self.topic, p)
                      for p in sorted(self._consumer.partitions_for_topic(self.topic) or {0})]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        ends = await self._consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._tail(ends))
        await asyncio.wait_for(self.loaded.wait(), timeout_s)

    async def _tail(self, ends: dict) -> None:
        if all(offset == 0 for offset in ends.values()):
            self.loaded.set()
        while True:
            polled = await self._consumer.getmany(timeout_ms=500)
            for records in polled.values():
                for record in records:
                    self.apply(record.key.decode(), record.value)
            if not self.loaded.is_set() and await self._caught_up(ends):
                self.loaded.set()
                log.info("projects_loaded", projects=len(self.projects))

    async def _caught_up(self, ends: dict) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def wait_for(self, check, timeout_s: float = 10.0) -> None:
        """Wait until ``check(self)`` is true, for example after this process wrote a change."""
        deadline = time.monotonic() + timeout_s
        while not check(self):
            if time.monotonic() > deadline:
                raise TimeoutError("the project store did not see the change in time")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()


class ProjectWriter:
    def __init__(self, settings: Settings) -> None:
        self.topic = projects_topic(settings)
        self.producer = make_producer(settings, linger_ms=0)

    async def start(self) -> None:
        await self.producer.start()

    async def write(self, project: Project) -> None:
        await self.producer.send_and_wait(self.topic, orjson.dumps(project.to_dict()), key=project.id.encode())

    async def stop(self) -> None:
        await self.producer.stop()
