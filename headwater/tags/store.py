"""The tag manager's containers, kept in the compacted topic ``headwater.tags`` and tailed into memory by
every process that reads them (the collector serves them, the admin API and the dashboard change them).

Two kinds of record:

- ``PROJECT/CONTAINER``: the container's **head**: its name, its draft (a checked definition, see
  :mod:`headwater.tags.model`) with ``draft_rev`` (one more at each save, so two editors cannot
  overwrite each other unknowingly), the version it serves (``published``, ``None`` before the first
  publish) and every version's number, note, time and author;
- ``PROJECT/CONTAINER/N``: version ``N``'s definition, written once by a publish and never changed,
  so a rollback serves it again as it was.

Deleting a container writes a tombstone for the head and for each version.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import tags_topic

CONTAINER_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")


def head_key(project_id: str, container: str) -> str:
    return f"{project_id}/{container}"


def version_key(project_id: str, container: str, version: int) -> str:
    return f"{project_id}/{container}/{version}"


class ContainerStore:
    """Every container's head and versions, as the topic holds them."""

    def __init__(self, settings: Settings) -> None:
        self.heads: dict[tuple[str, str], dict] = {}
        self.versions: dict[tuple[str, str, int], dict] = {}
        self.tail = TopicTail(settings, tags_topic(settings), self.apply)
        self.changed = 0  # how many records were applied: a cache of compiled scripts keys on it

    def apply(self, key: str, value: bytes | None) -> None:
        parts = key.split("/")
        try:
            record = None if value is None else orjson.loads(value)
        except orjson.JSONDecodeError:
            return
        self.changed += 1
        if len(parts) == 2:
            self._put(self.heads, (parts[0], parts[1]), record)
        elif len(parts) == 3 and parts[2].isdigit():
            self._put(self.versions, (parts[0], parts[1], int(parts[2])), record)

    @staticmethod
    def _put(target: dict, at: tuple, record: dict | None) -> None:
        if record is None:
            target.pop(at, None)
        else:
            target[at] = record

    def head(self, project_id: str, container: str) -> dict | None:
        return self.heads.get((project_id, container))

    def version(self, project_id: str, container: str, version: int) -> dict | None:
        return self.versions.get((project_id, container, version))

    def containers(self, project_id: str) -> list[tuple[str, dict]]:
        return sorted((c, head) for (p, c), head in self.heads.items() if p == project_id)

    async def start(self) -> None:
        await self.tail.start()

    async def wait_for(self, check: Callable[[ContainerStore], object], timeout_s: float = 10.0) -> None:
        await self.tail.wait_for(lambda: check(self), timeout_s)

    async def stop(self) -> None:
        await self.tail.stop()
