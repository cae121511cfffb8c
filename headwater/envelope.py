"""The envelope: one Segment-style event plus what the collector stamped on it.

On Kafka, a message value is a *batch* of envelopes (an orjson list), all of one project and all
belonging to the same partition (see :mod:`headwater.partitioning`). Batching many events into one
message is what keeps Python's per-message cost off the hot path, while grouping by partition keeps
each visitor's events in one partition, in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson


@dataclasses.dataclass(slots=True)
class Envelope:
    project_id: str
    message_id: str
    received_at_ms: int
    request_id: str
    event: dict[str, Any]
    ip: str | None = None
    user_agent: str | None = None
    enriched: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the processors derived

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
        return orjson.dumps(self)

    @classmethod
    def from_dict(cls, raw: object) -> Envelope:
        if not isinstance(raw, dict):
            raise ValueError("an envelope must be a JSON object")
        try:
            envelope = cls(**raw)
        except TypeError as exc:
            raise ValueError(f"not an envelope: {exc}") from exc
        if not isinstance(envelope.event, dict) or not isinstance(envelope.project_id, str):
            raise ValueError("an envelope needs a project_id string and an event object")
        return envelope

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Decode one envelope; raises ``ValueError`` on anything else."""
        return cls.from_dict(orjson.loads(data))


def encode_batch(envelopes: list[Envelope]) -> bytes:
    return orjson.dumps(envelopes)


def decode_batch(data: bytes) -> list[Envelope]:
    """Decode a message value; raises ``ValueError`` when it is not a non-empty list of envelopes."""
    raw = orjson.loads(data)
    if not isinstance(raw, list) or not raw:
        raise ValueError("a message must hold a non-empty list of envelopes")
    return [Envelope.from_dict(item) for item in raw]
