"""How each destination is doing, as the forwarders running it last said: written by the forwarder
(``forwarder/service.py``), read by the Destinations page.

The compacted topic ``headwater.forwarder-status`` holds one record per destination and forwarder
process (key ``<project>/<name>/<process>``): whether its deliveries are failing, how many events it
retried since the process started, and its last error with its time. A forwarder writes a record when
any of that changes, and at least every :data:`HEARTBEAT_S` while it runs the destination, so a
reader can tell a current state from one left by a process that is gone (``updated_at_ms``).
"""

from __future__ import annotations

import dataclasses

import orjson

from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import forwarder_status_topic

HEARTBEAT_S = 30.0


@dataclasses.dataclass
class DestinationStatus:
    project: str
    destination: str
    process: str
    failing: bool = False
    retried: int = 0
    last_error: str = ""
    last_error_at_ms: int = 0
    updated_at_ms: int = 0

    @property
    def key(self) -> str:
        return f"{self.project}/{self.destination}/{self.process}"

    def encode(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    def changed_from(self, other: DestinationStatus | None) -> bool:
        """Whether anything but the time of writing differs."""
        return other is None or dataclasses.replace(other, updated_at_ms=0) != dataclasses.replace(
            self, updated_at_ms=0)


class StatusBoard:
    """The latest status of every destination, by (project, destination), from the topic."""

    def __init__(self, settings: Settings) -> None:
        self.by_key: dict[str, DestinationStatus] = {}
        self.tail = TopicTail(settings, forwarder_status_topic(settings), self.apply)

    def apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.by_key.pop(key, None)
            return
        try:
            self.by_key[key] = DestinationStatus(**orjson.loads(value))
        except (TypeError, ValueError):
            pass  # not a status this version writes

    def of(self, project: str, destination: str) -> list[DestinationStatus]:
        """The statuses every process wrote for the destination, the latest first."""
        found = [s for s in self.by_key.values() if s.project == project and s.destination == destination]
        return sorted(found, key=lambda s: -s.updated_at_ms)

    async def start(self) -> None:
        await self.tail.start()

    async def stop(self) -> None:
        await self.tail.stop()
