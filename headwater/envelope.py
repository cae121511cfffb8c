"""The envelope: one Segment-style event plus what the collector stamped on it.

On Kafka, a message value is a *batch* of envelopes (a JSON list), all of one project and all
belonging to the same partition (see :mod:`headwater.partitioning`). Batching many events into one
message is what keeps Python's per-message cost off the hot path, while grouping by partition keeps
each visitor's events in one partition, in order.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson


class Envelope(msgspec.Struct):
    """One event and what the collector stamped on it. A ``msgspec.Struct``: records are decoded straight
    into envelopes and encoded from them, with their field types checked on the way in (about half the
    CPU of ``orjson`` into dicts and a dataclass, docs/performance.md)."""

    project_id: str
    message_id: str
    received_at_ms: int
    request_id: str
    event: dict[str, Any]
    ip: str | None = None
    user_agent: str | None = None
    enriched: dict[str, Any] = {}  # what the processors derived (a fresh dict per envelope)

    @property
    def visitor_id(self) -> str:
        return str(self.event.get("anonymousId") or self.event.get("userId") or "")

    def key(self) -> bytes:
        """The partitioning key: ``project:visitor``, or ``project:<bucket>`` for a cookieless visitor,
        whose id changes every day (see processors/anonymize.py)."""
        return f"{self.project_id}:{self.enriched.get('partition_key') or self.visitor_id}".encode()

    def visitor_key(self) -> str:
        """``project:visitor``: what per-visitor state is kept under."""
        return f"{self.project_id}:{self.visitor_id}"

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    def to_dict(self) -> dict[str, Any]:
        """The envelope as plain JSON types (to embed it in another document)."""
        return msgspec.to_builtins(self)

    @classmethod
    def from_dict(cls, raw: object) -> Envelope:
        """An envelope from plain JSON types; raises ``ValueError`` when they do not make one."""
        try:
            return msgspec.convert(raw, cls)
        except msgspec.ValidationError as exc:
            raise ValueError(f"not an envelope: {exc}") from exc

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Decode one envelope; raises ``ValueError`` on anything else."""
        try:
            return _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"not an envelope: {exc}") from exc


MAX_EVENT_DEPTH = 254  # levels of nesting: the most orjson writes (dead letters embed the event with it)


class TooDeep(ValueError):
    """The event is nested more than :data:`MAX_EVENT_DEPTH` levels deep."""


def event_size(event: dict[str, Any]) -> int:
    """The event's size as compact JSON, in bytes; raises :class:`TooDeep` when no step could write it."""
    try:
        return len(orjson.dumps(event))
    except TypeError as exc:
        raise TooDeep(f"objects and arrays nested deeper than {MAX_EVENT_DEPTH}") from exc


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Envelope)
_BATCH_DECODER = msgspec.json.Decoder(list[Envelope])


def encode_batch(envelopes: list[Envelope]) -> bytes:
    return _ENCODER.encode(envelopes)


def decode_batch(data: bytes) -> list[Envelope]:
    """Decode a message value; raises ``ValueError`` when it is not a non-empty list of envelopes."""
    try:
        envelopes = _BATCH_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a message must hold a non-empty list of envelopes: {exc}") from exc
    if not envelopes:
        raise ValueError("a message must hold a non-empty list of envelopes")
    return envelopes
