"""Who may send: the write key names the project; the project must be enabled; a browser (a request
with an Origin header) must use the project's public key from an allowed origin."""

from __future__ import annotations

import base64
import binascii

from collector.errors import ApiError
from collector.request import IngestRequest
from headwater.projects.model import PUBLIC, SERVER, WRITE_KINDS, Project
from headwater.projects.store import ProjectStore


def basic_username(request: IngestRequest) -> str | None:
    """The HTTP Basic username; ``""`` for a Basic header that cannot be read; ``None`` without one."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        return base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return ""


def write_key(request: IngestRequest, payload: dict) -> str | None:
    """The HTTP Basic username (the password is empty), else ``writeKey`` in the body."""
    if "writeKey" in payload and not isinstance(payload["writeKey"], str):
        raise ApiError(400, "invalid_envelope", "writeKey must be a string",
                       [{"field": "writeKey", "reason": "must be a string"}])
    username = basic_username(request)
    if username is not None:
        return username or None
    key = payload.get("writeKey")
    return key if isinstance(key, str) and key else None


def public_project(store: ProjectStore, request: IngestRequest) -> Project | None:
    """The project whose public key is the request's HTTP Basic username, if any (for the CORS headers
    of an answer refused before the body was read)."""
    key = basic_username(request)
    found = store.find_key(key) if key else None
    return found[0] if found is not None and found[1].kind == PUBLIC else None


def authenticate(store: ProjectStore, key: str | None, origin: str | None, now_ms: int) -> Project:
    if not key:
        raise ApiError(401, "missing_write_key", "send the write key as the HTTP Basic username or as writeKey")
    found = store.find_key(key)
    if found is None or not found[1].active(now_ms) or found[1].kind not in WRITE_KINDS:
        raise ApiError(401, "invalid_write_key", "the write key is not known or has expired")
    project, key_record = found
    if not project.enabled:
        raise ApiError(403, "project_disabled", "this project is disabled")
    if origin is not None:
        if key_record.kind == SERVER:
            raise ApiError(403, "origin_not_allowed", "server keys are secret: use the public key in browsers")
        if not project.origin_allowed(origin):
            raise ApiError(403, "origin_not_allowed", f"origin {origin[:200]!r} is not allowed for this project")
    return project
