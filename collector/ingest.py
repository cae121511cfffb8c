"""Segment-compatible ingestion: parse, authenticate, check, stamp, publish.

A request is answered 200 only after Kafka has acknowledged every event it accepted. In a batch, valid
events are accepted and invalid ones are reported back in ``errors`` with their index; the answer is
200 when at least one event was accepted, 400 when none was.
"""

from __future__ import annotations

import base64
import time
import uuid

import orjson
from starlette.requests import Request

from collector.errors import ApiError
from collector.stamp import stamp
from headwater.envelope import Envelope
from headwater.settings import Settings

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
MAX_REQUEST_BYTES = 500 * 1024


async def read_json(request: Request) -> dict:
    body = await request.body()
    if len(body) > MAX_REQUEST_BYTES:
        raise ApiError(413, "too_large", f"request body over {MAX_REQUEST_BYTES} bytes")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_envelope", "the body must be a JSON object")
    return payload


def write_key(request: Request, payload: dict) -> str | None:
    """The HTTP Basic username (password empty), or ``writeKey`` in the body."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            return base64.b64decode(header[6:], validate=True).decode().partition(":")[0]
        except (ValueError, UnicodeDecodeError):
            return None
    key = payload.get("writeKey")
    return key if isinstance(key, str) else None


def authenticate(settings: Settings, request: Request, payload: dict) -> str:
    """Return the project id the write key belongs to."""
    key = write_key(request, payload)
    if not key:
        raise ApiError(401, "missing_write_key", "send the write key as the Basic username or writeKey")
    if key != settings.default_write_key:
        raise ApiError(401, "invalid_write_key", "the write key is not known")
    return settings.default_project


def check_event(event: object) -> list[dict]:
    """Envelope problems of one event, each with the field and a reason; empty when it is fine."""
    if not isinstance(event, dict):
        return [{"field": "", "reason": "an event must be a JSON object"}]
    problems = []
    if event.get("type") not in EVENT_TYPES:
        problems.append({"field": "type", "reason": f"must be one of {', '.join(EVENT_TYPES)}"})
    if not (event.get("anonymousId") or event.get("userId")):
        problems.append({"field": "anonymousId", "reason": "anonymousId or userId is required"})
    if event.get("type") == "track" and not isinstance(event.get("event"), str):
        problems.append({"field": "event", "reason": "a track call needs an event name"})
    return problems


def events_of(payload: dict, call: str) -> list:
    """The request's events. A batch's top-level ``sentAt`` applies to events that carry none."""
    if call != "batch":
        return [{**payload, "type": call}]
    batch = payload.get("batch")
    if not isinstance(batch, list) or not batch:
        raise ApiError(400, "invalid_envelope", "batch must be a non-empty list",
                       [{"field": "batch", "reason": "must be a non-empty list"}])
    sent_at = payload.get("sentAt")
    if sent_at:
        for event in batch:
            if isinstance(event, dict):
                event.setdefault("sentAt", sent_at)
    return batch


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def accept(settings: Settings, request: Request, payload: dict, call: str) -> tuple[list[Envelope], list[dict]]:
    """Split the request's events into stamped envelopes and reported errors."""
    project_id = authenticate(settings, request, payload)
    request_id = str(uuid.uuid4())
    received_at_ms = int(time.time() * 1000)
    ip, user_agent = client_ip(request), request.headers.get("user-agent")
    accepted, errors = [], []
    for index, event in enumerate(events_of(payload, call)):
        problems = check_event(event)
        if problems:
            errors.extend({"index": index, **p} for p in problems)
            continue
        accepted.append(stamp(event, project_id, request_id, received_at_ms, ip, user_agent))
    return accepted, errors
