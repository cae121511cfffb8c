"""What the collector stamps on each accepted event before it goes to Kafka, and which event times
it accepts.

An event's time, in order:

1. the client's time (``timestamp``, else ``originalTimestamp``), corrected for the client's clock
   by Segment's rule ``timestamp = receivedAt - (sentAt - originalTimestamp)`` when ``sentAt`` is
   given; a correction that lands outside the accepted window (a ``sentAt`` nowhere near the receive
   time) is not trusted, and the client's time is used as it is;
2. no client time: the receive time;
3. more than ``max_event_future_s`` after the receive time: the receive time (Segment and PostHog do
   the same), the client's time kept in ``originalTimestamp``;
4. more than ``max_event_age_days`` before the receive time: refused (``too_old``).

So every stored time lies in a bounded window around the receive time: one request cannot scatter
events over more monthly partitions than ClickHouse takes in one INSERT, nor move a project's
session clock into the future.
"""

from __future__ import annotations

import dataclasses
import uuid

from headwater.envelope import Envelope
from headwater.settings import Settings
from headwater.timeutil import epoch_ms, iso_ms

DAY_MS = 86_400_000


@dataclasses.dataclass(frozen=True)
class TimeWindow:
    future_ms: int
    past_ms: int

    @classmethod
    def of(cls, settings: Settings) -> TimeWindow:
        return cls(int(settings.max_event_future_s * 1000), int(settings.max_event_age_days * DAY_MS))

    def contains(self, ms: int, received_at_ms: int) -> bool:
        return received_at_ms - self.past_ms <= ms <= received_at_ms + self.future_ms

    def settle(self, event: dict, received_at_ms: int) -> dict | None:
        """Set the event's ``timestamp`` (and keep the client's in ``originalTimestamp``); return a
        problem (``{"field", "reason", "detail"}``) when the event is too old to accept."""
        original = event.get("originalTimestamp") or event.get("timestamp")
        original_ms = epoch_ms(original)
        if original_ms is None:
            event["timestamp"] = iso_ms(received_at_ms)
            return None
        event["originalTimestamp"] = original
        sent_ms = epoch_ms(event.get("sentAt"))
        corrected = received_at_ms - (sent_ms - original_ms) if sent_ms is not None else original_ms
        ms = corrected if self.contains(corrected, received_at_ms) else original_ms
        if ms > received_at_ms + self.future_ms:
            ms = received_at_ms
        elif ms < received_at_ms - self.past_ms:
            days = self.past_ms // DAY_MS
            return {"field": "timestamp", "reason": "too_old",
                    "detail": f"{original} is more than {days} days before the time it was received"}
        event["timestamp"] = iso_ms(ms)
        return None


def stamp(event: dict, project_id: str, request_id: str, received_at_ms: int,
          ip: str | None, user_agent: str | None) -> Envelope:
    """Give the event (its time already settled by :meth:`TimeWindow.settle`) its ``messageId`` when it
    has none, and ``receivedAt``, and wrap it with the request's facts. Numeric ids are stored as text."""
    for name in ("anonymousId", "userId", "groupId", "previousId"):
        if isinstance(event.get(name), int):
            event[name] = str(event[name])
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        message_id = event["messageId"] = str(uuid.uuid4())
    event["receivedAt"] = iso_ms(received_at_ms)
    return Envelope(project_id, message_id, received_at_ms, request_id, event, ip, user_agent)
