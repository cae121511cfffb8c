"""The envelope: one Segment-style event plus what the collector stamped on it.

Envelopes travel as orjson-encoded Kafka message values, keyed by ``project:visitor`` so that each
visitor's events stay in order within one partition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

VERSION = 1


@dataclasses.dataclass(slots=True)
class Envelope:
    project_id: str
    message_id: str
    received_at_ms: int
    request_id: str
    event: dict[str, Any]
    ip: str | None = None
    user_agent: str | None = None

    @property
    def visitor_id(self) -> str:
        return str(self.event.get("anonymousId") or self.event.get("userId") or "")

    def key(self) -> bytes:
        return f"{self.project_id}:{self.visitor_id}".encode()

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": VERSION,
                "project_id": self.project_id,
                "message_id": self.message_id,
                "received_at_ms": self.received_at_ms,
                "request_id": self.request_id,
                "ip": self.ip,
                "user_agent": self.user_agent,
                "event": self.event,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Decode an envelope; raises ``ValueError`` (orjson's error included) on bad bytes."""
        raw = orjson.loads(data)
        if not isinstance(raw, dict) or raw.get("v") != VERSION:
            raise ValueError("not a version-1 Headwater envelope")
        return cls(
            project_id=raw["project_id"],
            message_id=raw["message_id"],
            received_at_ms=raw["received_at_ms"],
            request_id=raw["request_id"],
            event=raw["event"],
            ip=raw.get("ip"),
            user_agent=raw.get("user_agent"),
        )
