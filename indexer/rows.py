"""Turning Kafka records into table rows: envelopes into ``events``, dead letters into
``failed_events``."""

from __future__ import annotations

import orjson

from headwater.envelope import Envelope
from headwater.timeutil import from_epoch_ms, parse_time

EVENT_COLUMNS = (
    "project_id", "message_id", "type", "event", "name", "anonymous_id", "user_id", "session_id", "session_seq",
    "timestamp", "sent_at",
    "received_at", "context", "properties", "traits", "user_agent", "ip", "request_id",
    "kafka_partition", "kafka_offset",
    "browser", "browser_version", "os", "os_version", "device", "is_bot",
    "country", "region", "city", "latitude", "longitude",
    "url", "url_host", "url_path", "url_query", "referrer", "referrer_host", "referrer_medium", "referrer_source",
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
)
FAILED_COLUMNS = ("failed_at", "step", "reason", "path", "detail", "message_id", "origin_topic",
                  "origin_partition", "origin_offset", "payload")


def _json(value: object) -> str:
    return orjson.dumps(value).decode() if value else "{}"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def traits_of(event: dict) -> object:
    """``traits``, or ``context.traits`` where RudderStack's SDKs put them."""
    context = event.get("context")
    return event.get("traits") or (context.get("traits") if isinstance(context, dict) else None)


def _enriched(envelope: Envelope) -> tuple:
    derived = envelope.enriched
    ua, geo = derived.get("ua") or {}, derived.get("geo") or {}
    page, ref, utm = derived.get("page") or {}, derived.get("referrer") or {}, derived.get("campaign") or {}
    return (
        _text(ua.get("browser")), _text(ua.get("browser_version")), _text(ua.get("os")),
        _text(ua.get("os_version")), _text(ua.get("device")), bool(ua.get("is_bot")),
        _text(geo.get("country")), _text(geo.get("region")), _text(geo.get("city")),
        geo.get("latitude"), geo.get("longitude"),
        _text(page.get("url")), _text(page.get("host")), _text(page.get("path")), _text(page.get("query")),
        _text(ref.get("url")), _text(ref.get("host")), _text(ref.get("medium")), _text(ref.get("source")),
        _text(utm.get("source")), _text(utm.get("medium")), _text(utm.get("campaign")),
        _text(utm.get("term")), _text(utm.get("content")),
    )


def event_row(envelope: Envelope, partition: int, offset: int) -> tuple:
    """One row, in ``EVENT_COLUMNS`` order. Track events are named by ``event``; other calls by type."""
    event = envelope.event
    session = envelope.enriched.get("session") or {}
    kind = str(event.get("type", "track"))
    received_at = from_epoch_ms(envelope.received_at_ms)
    return (
        envelope.project_id, envelope.message_id, kind,
        str(event.get("event") or kind) if kind == "track" else kind,
        _text(event.get("name")),
        _text(event.get("anonymousId")), _text(event.get("userId")),
        _text(session.get("id")), int(session.get("seq") or 0),
        parse_time(event.get("timestamp")) or received_at, parse_time(event.get("sentAt")), received_at,
        _json(event.get("context")), _json(event.get("properties")), _json(traits_of(event)),
        envelope.user_agent or "", envelope.ip or "", envelope.request_id, partition, offset,
        *_enriched(envelope),
    )


def failed_row(record: dict, payload: object) -> tuple:
    """One ``failed_events`` row from a dead-letter record (``payload`` already cleaned)."""
    origin = record.get("origin") or {}
    return (
        from_epoch_ms(int(record.get("failed_at_ms") or 0)), _text(record.get("step")), _text(record.get("reason")),
        _text(record.get("path")), _text(record.get("detail")), _text(record.get("message_id")),
        _text(origin.get("topic")), int(origin.get("partition") or 0), int(origin.get("offset") or 0),
        payload if isinstance(payload, str) else orjson.dumps(payload).decode(),
    )


def session_row(row: list) -> tuple:
    """A ``sessions`` row as the sessionizer emitted it, with its times as datetimes."""
    return (*row[:4], from_epoch_ms(row[4]), from_epoch_ms(row[5]), *row[6:])
