"""What the ingest path reads of a request, whichever front received it (the HTTP protocol's own fast
path, collector/protocol.py, or the ASGI application), and what it answers."""

from __future__ import annotations

import dataclasses

import orjson


@dataclasses.dataclass(slots=True)
class IngestRequest:
    """A whole request: its headers (lower-case names, the first value of a repeated header, as
    Starlette's ``Headers.get``), the peer's address, and its body read up to the size limit.
    ``oversized`` says the body (declared or received) went past that limit and was not kept."""

    headers: dict[str, str]
    peer: str | None
    body: bytes = b""
    oversized: bool = False


def headers_of(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers as the ASGI scope and the HTTP parser give them (lower-case names) to a dict in which
    the first of repeated names wins."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


@dataclasses.dataclass(slots=True)
class Answer:
    """A JSON answer: its status, its body already encoded, and its extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def json(cls, status: int, content: object, headers: dict[str, str] | None = None) -> Answer:
        return cls(status, orjson.dumps(content), headers or {})

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The answer's headers as (name, value) bytes, content type and length first."""
        return [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode()),
                *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items())]
