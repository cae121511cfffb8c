"""What a relay transform returns."""

from __future__ import annotations

import dataclasses

from headwater.routing import Headers


@dataclasses.dataclass(slots=True)
class Output:
    """One Kafka record to produce. ``events`` is how many events it carries; ``dead`` marks a
    dead-letter record (used for the invalid-ratio limit)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    events: int = 1
    dead: bool = False
    partition: int | None = None  # None: the key decides
