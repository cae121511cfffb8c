"""The project store: an in-memory view of the compacted projects topic, kept current by tailing it.

Every replica of every role that needs projects runs one :class:`ProjectStore`, a
:class:`~headwater.tailing.TopicTail` of the projects topic, so a change made through the admin API or
CLI is visible everywhere within a second.

:class:`ProjectWriter` writes a project's whole record (last write wins) with ``acks=all``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
import structlog

from headwater.destinations import opened, sealed
from headwater.kafka import make_producer
from headwater.projects.model import Key, Project, key_hash
from headwater.sealing import Sealer
from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import projects_topic

log = structlog.get_logger()
T = TypeVar("T")


class ProjectStore:
    def __init__(self, settings: Settings) -> None:
        self.projects: dict[str, Project] = {}
        self.by_key_hash: dict[str, tuple[Project, Key]] = {}
        self._derived: dict[tuple[str, str], Any] = {}
        self.sealer = Sealer(settings.secret_key)
        self.tail = TopicTail(settings, projects_topic(settings), self.apply)

    @property
    def loaded(self) -> asyncio.Event:
        return self.tail.loaded

    def get(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def derived(self, project_id: str, name: str, compute: Callable[[Project | None], T]) -> T:
        """``compute(project)``, remembered until the project's record changes: for what the hot
        path derives from a project's configuration (a validated flow, session options)."""
        cache_key = (project_id, name)
        if cache_key not in self._derived:
            self._derived[cache_key] = compute(self.projects.get(project_id))
        return self._derived[cache_key]

    def find_key(self, key: str) -> tuple[Project, Key] | None:
        return self.by_key_hash.get(key_hash(key))

    def apply(self, project_id: str, value: bytes | None) -> None:
        """Apply one record of the topic: a project's whole state, or a tombstone."""
        old = self.projects.pop(project_id, None)
        self._derived = {k: v for k, v in self._derived.items() if k[0] != project_id}
        if old:
            for key in old.keys:
                self.by_key_hash.pop(key.hash, None)
        if value is None:
            return
        project = Project.from_dict(orjson.loads(value))
        project.hash_keys = [{**k, "secret": self.sealer.open(k["secret"])} for k in project.hash_keys]
        project.destinations = opened(project.destinations, self.sealer)
        self.projects[project_id] = project
        for key in project.keys:
            self.by_key_hash[key.hash] = (project, key)

    async def start(self) -> None:
        await self.tail.start()
        log.info("projects_loaded", projects=len(self.projects))

    async def wait_for(self, check, timeout_s: float = 10.0) -> None:
        await self.tail.wait_for(lambda: check(self), timeout_s)

    async def stop(self) -> None:
        await self.tail.stop()


class ProjectWriter:
    def __init__(self, settings: Settings) -> None:
        self.topic = projects_topic(settings)
        self.producer = make_producer(settings, linger_ms=0)
        self.sealer = Sealer(settings.secret_key)

    async def start(self) -> None:
        await self.producer.start()

    async def write(self, project: Project) -> None:
        """Write the project's whole state, its HMAC keys and destinations' secrets sealed
        (headwater/sealing.py)."""
        record = project.to_dict()
        record["hash_keys"] = [{**k, "secret": self.sealer.seal(k["secret"])} for k in record["hash_keys"]]
        record["destinations"] = sealed(record["destinations"], self.sealer)
        await self.producer.send_and_wait(self.topic, orjson.dumps(record), key=project.id.encode())

    async def publish(self, topic: str, value: bytes | None, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Write one other record with the same producer, acknowledged by every in-sync replica (a test
        alert)."""
        await self.producer.send_and_wait(topic, value, key=key, headers=headers)

    async def stop(self) -> None:
        await self.producer.stop()


class FixedProjects:
    """A fixed set of projects with the read side of :class:`ProjectStore` (``get``, ``derived``):
    for running processors in-process, in benchmarks and tests, without Kafka."""

    def __init__(self, *projects: Project) -> None:
        self.projects = {p.id: p for p in projects}
        self._derived: dict[tuple[str, str], Any] = {}

    def get(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def derived(self, project_id: str, name: str, compute: Callable[[Project | None], T]) -> T:
        """``compute(project)``, remembered, as :meth:`ProjectStore.derived` does."""
        cache_key = (project_id, name)
        if cache_key not in self._derived:
            self._derived[cache_key] = compute(self.get(project_id))
        return self._derived[cache_key]
