"""Turning envelopes into rows of a project's ``events`` table."""

from __future__ import annotations

import orjson

from headwater.envelope import Envelope
from headwater.timeutil import from_epoch_ms, parse_time

EVENT_COLUMNS = (
    "project_id", "message_id", "type", "event", "anonymous_id", "user_id", "timestamp", "sent_at",
    "received_at", "context", "properties", "traits", "user_agent", "request_id",
    "kafka_partition", "kafka_offset",
)


def _json(value: object) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def traits_of(event: dict) -> object:
    """``traits``, or ``context.traits`` where RudderStack's SDKs put them."""
    context = event.get("context")
    return event.get("traits") or (context.get("traits") if isinstance(context, dict) else None)


def event_row(envelope: Envelope, partition: int, offset: int) -> tuple:
    """One row, in ``EVENT_COLUMNS`` order. Track events are named by ``event``; other calls by type."""
    event = envelope.event
    kind = str(event.get("type", "track"))
    received_at = from_epoch_ms(envelope.received_at_ms)
    return (
        envelope.project_id,
        envelope.message_id,
        kind,
        str(event.get("event") or kind) if kind == "track" else kind,
        str(event.get("anonymousId") or ""),
        str(event.get("userId") or ""),
        parse_time(event.get("timestamp")) or received_at,
        parse_time(event.get("sentAt")),
        received_at,
        _json(event.get("context")),
        _json(event.get("properties")),
        _json(traits_of(event)),
        envelope.user_agent or "",
        envelope.request_id,
        partition,
        offset,
    )
