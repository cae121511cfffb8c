"""The Segment-compatible destination: events in Segment's wire format, to any Segment-compatible
endpoint (another Headwater's collector, RudderStack, PostHog's ``/batch``, Segment itself).

Settings: ``url``, the endpoint's base (``https://api.segment.io``) or its batch URL when it ends in
``/batch``; ``write_key``, the target's write key (a secret), sent as HTTP Basic authentication as
Segment's libraries do. Each batch is one ``{"batch": [event, ...], "sentAt": ...}`` POST; a target
that deduplicates by ``messageId`` (Segment, Headwater, RudderStack) stores a redelivered event once.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

from forwarder.http import Poster, check_url
from forwarder.outcomes import Delivered, Item, Outcome
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SETTINGS = frozenset({"url", "write_key"})
# what one batch may hold at Segment's API (500 KB); larger batches are sent in parts
MAX_BATCH_BYTES = 480 * 1024


def batch_url(url: str) -> str:
    return url if url.rstrip("/").endswith("/batch") else url.rstrip("/") + "/v1/batch"


class Segment:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = check_url(settings.get("url"))
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; a segment destination has "
                            f"{sorted(SETTINGS)}")
        if not isinstance(settings.get("write_key"), str) or not settings.get("write_key"):
            problems.append("write_key: the target's write key")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.url = batch_url(spec.settings["url"])
        token = base64.b64encode(f"{spec.settings['write_key']}:".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}
        self.poster = Poster(settings)

    async def start(self) -> None:
        pass

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        sent_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for part in _parts([orjson.dumps(item.event) for item in items]):
            body = b'{"batch":[' + b",".join(part) + b'],"sentAt":"' + sent_at.encode() + b'"}'
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
