"""Segment-compatible ingestion: limit, parse, authenticate, check, stamp.

What happens to a request, in order:

1. the client IP's request bucket is charged (429 when empty);
2. the body is read within ``max_request_bytes`` (413), inflated if gzip (415 for other encodings),
   parsed as a JSON object (415 for non-JSON content types, 400 when malformed);
3. the write key is checked (401), the project must be enabled (403) and a browser's Origin allowed
   (403);
4. each event is checked against ``schemas/headwater/segment_event`` and ``max_event_bytes``;
5. the project's event bucket is charged for the valid events (429 when empty);
6. the valid events are stamped and handed to Kafka; the answer is 200 once Kafka acknowledged them.

A batch with some invalid events: the valid ones are accepted, the invalid ones are listed in
``errors`` by their index, field and reason, and the answer is 200 with ``accepted`` and ``rejected``
counts. When no event of the request is valid the answer is 400 with the same ``errors`` (413 for a
single event over the size limit). ``errors`` lists the first :data:`MAX_LISTED_ERRORS` problems and
``error_count`` says how many events had any, so an answer stays small whatever the request.

The work one request can cause is bounded: a batch holds at most ``max_batch_events`` events (400
``too_many_events`` otherwise), and checking yields to the event loop every :data:`CHECK_SLICE`
events, so other requests (``/healthz`` included) are served meanwhile.

An empty ``anonymousId`` or ``userId`` means none (RudderStack's browser SDK sends ``"userId": ""``
before ``identify``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import re
import time
from typing import Any

from collector.auth import authenticate, write_key
from collector.body import read_json
from collector.compact import Invalid, expand
from collector.errors import ApiError
from collector.network import ClientAddress
from collector.request import IngestRequest
from collector.stamp import TimeWindow, stamp
from headwater.envelope import Envelope, TooDeep, event_size
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.ratelimit import TokenBuckets, retry_after
from headwater.schemas import Schema, load_schema
from headwater.settings import Settings

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
BATCH, COMPACT = "batch", "compact"
MAX_LISTED_ERRORS = 20
CHECK_SLICE = 256
OPTIONAL_IDS = ("anonymousId", "userId")


_REQUEST_PREFIX = os.urandom(6).hex()
_request_counter = itertools.count(1)


def next_request_id() -> str:
    """Unique across processes (a random prefix per process) and cheap (a counter within it)."""
    return f"{_REQUEST_PREFIX}-{next(_request_counter):x}"


@dataclasses.dataclass
class Accepted:
    project: Project
    envelopes: list[Envelope]
    errors: list[dict]

    rejected: int = 0


class Ingest:
    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        self.settings = settings
        self.store = store
        self.schema: Schema = load_schema("headwater", "segment_event", "1-0-0")
        self.addresses = ClientAddress(settings.trusted_proxies)
        self.per_ip = TokenBuckets(settings.rate_limit_ip_rps, settings.rate_limit_ip_burst)
        self.per_project = TokenBuckets(settings.rate_limit_project_eps, settings.rate_limit_project_burst)
        self.window = TimeWindow.of(settings)

    async def accept(self, request: IngestRequest, call: str) -> Accepted:
        ip = self.addresses.of(request)
        if wait := self.per_ip.take(ip or "unknown"):
            raise ApiError(429, "rate_limited", "too many requests from this address",
                           headers={"Retry-After": retry_after(wait)})
        payload = read_json(request, self.settings.max_request_bytes)
        if call == COMPACT:
            payload, call = expand(payload), BATCH
        received_at_ms = int(time.time() * 1000)
        project = authenticate(self.store, write_key(request, payload), request.headers.get("origin"),
                               received_at_ms)
        try:
            batch = events_of(payload, call, self.settings.max_batch_events)
            events, errors, rejected = await self.check(batch, received_at_ms, single=call != BATCH)
            if events and (wait := self.per_project.take(project.id, len(events))):
                raise ApiError(429, "rate_limited", "this project is over its event rate",
                               headers={"Retry-After": retry_after(wait)})
        except ApiError as exc:
            exc.project = project
            raise
        request_id = next_request_id()
        user_agent = request.headers.get("user-agent")
        envelopes = [stamp(e, project.id, request_id, received_at_ms, ip, user_agent) for e in events]
        return Accepted(project, envelopes, errors, rejected)

    async def check(self, events: list, received_at_ms: int,
                    single: bool) -> tuple[list[dict], list[dict], int]:
        """The valid events, the first problems of the invalid ones, and how many were invalid."""
        valid: list[dict] = []
        errors: list[dict] = []
        rejected = 0
        for index, event in enumerate(events):
            if index and index % CHECK_SLICE == 0:
                await asyncio.sleep(0)
            problems = self.problems(event, received_at_ms, listed=len(errors) < MAX_LISTED_ERRORS)
            if not problems:
                valid.append(event)
                continue
            if single and problems[0]["reason"] == "too_large":
                raise ApiError(413, "too_large", problems[0]["detail"])
            rejected += 1
            errors.extend({"index": index, **p} for p in problems[:MAX_LISTED_ERRORS - len(errors)])
        if not valid:
            raise ApiError(400, "invalid_envelope", "no valid event in the request", errors, count=rejected)
        return valid, errors, rejected

    def problems(self, event: Any, received_at_ms: int, listed: bool = True) -> list[dict]:
        """What is wrong with one event (empty when nothing is). With ``listed`` false the problems are
        only counted by the caller, so a schema violation is reported without working out each field."""
        if isinstance(event, Invalid):
            return event.problems
        if isinstance(event, dict):
            drop_empty_ids(event)
        try:
            size = event_size(event)
        except TooDeep as exc:
            return [{"field": "", "reason": "too_deep", "detail": str(exc)}]
        if not self.schema.is_valid(event):
            return self.schema.errors(event) if listed else [{"field": "", "reason": "schema_violation"}]
        if size > self.settings.max_event_bytes:
            detail = f"the event is {size} bytes; the limit is {self.settings.max_event_bytes}"
            return [{"field": "", "reason": "too_large", "detail": detail}]
        problem = self.window.settle(event, received_at_ms)
        return [problem] if problem else []


def drop_empty_ids(event: dict) -> None:
    for name in OPTIONAL_IDS:
        if event.get(name) == "":
            del event[name]


def is_time(value: object) -> bool:
    time_schema = load_schema("headwater", "segment_event", "1-0-0").document["$defs"]["time"]
    return isinstance(value, str) and re.search(time_schema["pattern"], value) is not None


def events_of(payload: dict, call: str, max_events: int) -> list:
    """The request's events. A batch's top-level ``sentAt`` and ``context`` apply to events that carry
    none."""
    if call != BATCH:
        return [{**payload, "type": call}]
    batch = payload.get("batch")
    if not isinstance(batch, list) or not batch:
        raise ApiError(400, "invalid_envelope", "batch must be a non-empty list",
                       [{"field": "batch", "reason": "must be a non-empty list"}])
    if len(batch) > max_events:
        raise ApiError(400, "too_many_events", f"a batch holds at most {max_events} events; this one has "
                       f"{len(batch)}: send them in several requests")
    shared = {k: payload[k] for k in ("sentAt", "context") if k in payload}
    if not isinstance(shared.get("context", {}), dict):
        raise ApiError(400, "invalid_envelope", "context must be an object",
                       [{"field": "context", "reason": "must be an object"}])
    if "sentAt" in shared and not is_time(shared["sentAt"]):
        raise ApiError(400, "invalid_envelope", "sentAt must be an ISO-8601 date-time",
                       [{"field": "sentAt", "reason": "must be an ISO-8601 date-time"}])
    if shared:
        for event in batch:
            if isinstance(event, dict):
                for name, value in shared.items():
                    event.setdefault(name, value)
    return batch
