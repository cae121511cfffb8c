"""What one delivery attempt of a batch came to, and the events a destination is given.

Every destination type answers :meth:`Destination.deliver` with one of three outcomes: the batch is
delivered; it should be tried again (``Retry``: the destination is away, overloaded or asked to wait);
or the destination refused it for what it holds (``Refused``). The forwarder retries the first kind
with backoff and dead-letters the second (:mod:`forwarder.service`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class Delivered:
    pass


@dataclasses.dataclass(frozen=True)
class Retry:
    """Try again, not before ``after_s`` seconds when the destination said so (``Retry-After``)."""

    reason: str
    after_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Refused:
    """Refused for good. ``per_event``: the refusal may be about some of the events only (an HTTP 400
    or 422, a record too large), so the forwarder splits the batch to find them; otherwise (a 401,
    403 or 404: the destination's settings are wrong) every event of the batch is dead-lettered."""

    reason: str
    per_event: bool = False


Outcome = Delivered | Retry | Refused


@dataclasses.dataclass(frozen=True)
class Item:
    """One event to deliver: as the destination gets it, and where it was read from."""

    event: dict[str, Any]
    visitor: str
    received_at_ms: int
    partition: int
    offset: int
    index: int  # its place in the record's list of envelopes


class Destination(Protocol):
    """A destination type's delivery. ``deliver`` must be safe to call again with the same items
    after any outcome, or a crash: delivery is at least once."""

    async def start(self) -> None: ...

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome: ...

    async def stop(self) -> None: ...


def http_outcome(status: int, retry_after: str | None, body: str) -> Outcome:
    """The outcome of an HTTP answer, as RudderStack's router and Segment classify them: 2xx delivered;
    408, 429 and 5xx retried (``Retry-After`` in seconds honoured); any other status refused."""
    if 200 <= status < 300:
        return Delivered()
    reason = f"HTTP {status}: {body[:300]}"
    if status in (408, 429) or status >= 500:
        return Retry(reason, _seconds(retry_after))
    return Refused(reason, per_event=status in (400, 413, 422))


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0  # an HTTP date: the forwarder's own backoff applies
