"""Reading a request body: size limits, gzip, content types, JSON."""

from __future__ import annotations

import zlib

import orjson

from collector.errors import ApiError
from collector.request import IngestRequest

# Real SDKs send JSON under all of these; anything else is refused with 415.
JSON_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded", "")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"request body over {limit} bytes")


def over_limit(declared: str | None, limit: int) -> bool:
    """Whether a Content-Length header already says the body is over ``limit``."""
    return bool(declared and declared.isdigit() and int(declared) > limit)


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing more than ``limit`` bytes of output (no zip bombs)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_encoding", f"the gzip body is corrupt: {exc}") from exc
    if len(out) > limit:
        raise _too_large(limit)
    return out


def read_json(request: IngestRequest, limit: int) -> dict:
    """The request's JSON object, or an :class:`ApiError` (413, 415 or 400) saying what is wrong."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"send JSON as application/json or text/plain, not {media_type!r}")
    if request.oversized or len(request.body) > limit:
        raise _too_large(limit)
    body = request.body
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip(body, limit)
    elif encoding not in ("identity", ""):
        raise ApiError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported; use gzip")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_envelope", "the body must be a JSON object",
                       [{"field": "", "reason": "must be a JSON object"}])
    return payload
