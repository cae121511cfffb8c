"""The Segment-compatible destination: events in Segment's wire format, to any Segment-compatible
endpoint (another Headwater's collector, RudderStack, Segment itself), or in PostHog's.

Settings: ``url``, the endpoint's base (``https://api.segment.io``) or its batch URL when it ends in
``/batch`` (or ``/batch/``); ``write_key``, the target's write key (a secret); ``format``, ``segment``
(the default) or ``posthog``.

- ``segment``: each batch is one ``{"batch": [event, ...], "sentAt": ...}`` POST with the write key as
  HTTP Basic authentication, as Segment's libraries send it. A target that deduplicates by ``messageId``
  (Segment, Headwater, RudderStack) stores a redelivered event once.
- ``posthog``: PostHog's ``/batch/`` capture endpoint: ``{"api_key": ..., "batch": [...]}``, each event
  mapped by :func:`posthog_event` (``distinct_id`` from ``userId``, else ``anonymousId``; page, screen,
  identify, group and alias as PostHog's ``$pageview``, ``$screen``, ``$identify``, ``$groupidentify``
  and ``$create_alias``; a ``messageId`` that is a UUID as the event's ``uuid``, which PostHog
  deduplicates on).
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import orjson

from forwarder.http import Poster, check_url
from forwarder.outcomes import Delivered, Item, Outcome
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"url", "write_key", "format"})
FORMATS = ("segment", "posthog")
POSTHOG_NAMES = {"page": "$pageview", "screen": "$screen", "identify": "$identify", "group": "$groupidentify",
                 "alias": "$create_alias"}
# what one batch may hold at Segment's API (500 KB); larger batches are sent in parts
MAX_BATCH_BYTES = 480 * 1024


def batch_url(url: str, format: str = "segment") -> str:
    if url.rstrip("/").endswith("/batch"):
        return url
    return url.rstrip("/") + ("/batch/" if format == "posthog" else "/v1/batch")


def posthog_event(event: dict) -> dict:
    """A Segment event as PostHog's capture API takes it."""
    kind = event.get("type", "track")
    properties = dict(event.get("properties") or {}) if isinstance(event.get("properties"), dict) else {}
    properties["$lib"] = "headwater"
    if kind in ("identify", "group") and isinstance(event.get("traits"), dict):
        properties["$set" if kind == "identify" else "$group_set"] = event["traits"]
    if kind == "group":
        properties.update({"$group_type": "company", "$group_key": event.get("groupId")})
    if kind == "alias":
        properties["alias"] = event.get("previousId")
    page = (event.get("context") or {}).get("page") if isinstance(event.get("context"), dict) else None
    if isinstance(page, dict) and page.get("url"):
        properties.setdefault("$current_url", page["url"])
    out = {"event": POSTHOG_NAMES.get(kind, event.get("event") or kind),
           "distinct_id": str(event.get("userId") or event.get("anonymousId") or ""),
           "properties": properties, "timestamp": event.get("timestamp")}
    message_id = str(event.get("messageId") or "")
    try:
        out["uuid"] = str(uuid.UUID(message_id))
    except ValueError:
        pass
    return out


class Segment:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = check_url(settings.get("url"))
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; a segment destination has "
                            f"{sorted(SETTINGS)}")
        if not isinstance(settings.get("write_key"), str) or not settings.get("write_key"):
            problems.append("write_key: the target's write key")
        if settings.get("format", "segment") not in FORMATS:
            problems.append(f"format: one of {', '.join(FORMATS)}")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.format = spec.settings.get("format", "segment")
        self.url = batch_url(spec.settings["url"], self.format)
        self.write_key = spec.settings["write_key"]
        token = base64.b64encode(f"{self.write_key}:".encode()).decode()
        self.headers = {} if self.format == "posthog" else {"Authorization": f"Basic {token}"}
        self.poster = Poster(settings)

    async def start(self) -> None:
        pass

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        posthog = self.format == "posthog"
        encoded = [orjson.dumps(posthog_event(item.event) if posthog else item.event) for item in items]
        for part in _parts(encoded):
            envelope = {"api_key": self.write_key} if posthog else {"sentAt": sent_at}
            body = orjson.dumps(envelope)[:-1] + b',"batch":[' + b",".join(part) + b"]}"
            outcome = await self.poster.post(self.url, body, self.headers)
            if not isinstance(outcome, Delivered):
                return outcome  # the parts before it go again with the retry: their messageIds collapse
        return Delivered()

    async def stop(self) -> None:
        await self.poster.close()


def _parts(encoded: list[bytes]) -> list[list[bytes]]:
    parts: list[list[bytes]] = [[]]
    size = 0
    for event in encoded:
        if parts[-1] and size + len(event) > MAX_BATCH_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(event)
        size += len(event) + 1
    return parts
