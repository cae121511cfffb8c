"""What the collector stamps on each accepted event before it goes to Kafka."""

from __future__ import annotations

import uuid

from headwater.envelope import Envelope
from headwater.timeutil import epoch_ms, iso_ms


def correct_clock_skew(event: dict, received_at_ms: int) -> None:
    """Segment's rule: ``timestamp = receivedAt - (sentAt - originalTimestamp)``.

    The client's own time is kept as ``originalTimestamp``. Without ``sentAt`` the client's clock is
    trusted as it is; without any client time the event happened when it was received.
    """
    original = event.get("originalTimestamp") or event.get("timestamp")
    original_ms, sent_ms = epoch_ms(original), epoch_ms(event.get("sentAt"))
    if original_ms is None:
        event["timestamp"] = iso_ms(received_at_ms)
        return
    event["originalTimestamp"] = original
    if sent_ms is not None:
        event["timestamp"] = iso_ms(received_at_ms - (sent_ms - original_ms))


def stamp(event: dict, project_id: str, request_id: str, received_at_ms: int,
          ip: str | None, user_agent: str | None) -> Envelope:
    """Give the event its ``messageId`` (when it has none), ``timestamp`` and ``receivedAt``, and wrap
    it with the request's facts. Numeric ids are stored as text."""
    for name in ("anonymousId", "userId"):
        if isinstance(event.get(name), int):
            event[name] = str(event[name])
    message_id = event.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        message_id = event["messageId"] = str(uuid.uuid4())
    correct_clock_skew(event, received_at_ms)
    event["receivedAt"] = iso_ms(received_at_ms)
    return Envelope(project_id, message_id, received_at_ms, request_id, event, ip, user_agent)
