"""The webhook destination: each batch is one HTTP POST of JSON to the team's URL.

Settings: ``url`` (http or https), optional ``secret`` (signs each request) and ``headers`` (added to
each request). The body::

    {"batch_id": ..., "project": ..., "destination": ..., "sent_at": ISO-8601, "events": [event, ...]}

Headers: ``Idempotency-Key`` is the batch id (the same batch delivered again carries the same key);
``X-Headwater-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the secret>``, as
Stripe signs its webhooks, so the receiver can check the sender and refuse a replayed old request.
Delivery is at least once: a receiver that must not apply a batch twice keeps the keys it has seen;
each event also carries its ``messageId``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import orjson

from forwarder.http import Poster, check_url
from forwarder.outcomes import Item, Outcome
from headwater.destinations import DestinationSpec
from headwater.settings import Settings

SIGNATURE_HEADER = "X-Headwater-Signature"
RESERVED_HEADERS = frozenset({"host", "content-type", "content-length", "idempotency-key", "transfer-encoding",
                              "connection", SIGNATURE_HEADER.lower()})
SETTINGS = frozenset({"url", "secret", "headers"})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Webhook:
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]:
        problems = check_url(settings.get("url"))
        if set(settings) - SETTINGS:
            problems.append(f"unknown settings {sorted(set(settings) - SETTINGS)}; a webhook has {sorted(SETTINGS)}")
        secret = settings.get("secret")
        if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
            problems.append("secret: at least 16 characters")
        headers = settings.get("headers", {})
        if not isinstance(headers, dict) or len(headers) > 20 or not all(
                isinstance(k, str) and isinstance(v, str) and k.lower() not in RESERVED_HEADERS
                and k.isascii() and "\n" not in k + v and "\r" not in k + v for k, v in headers.items()):
            problems.append(f"headers: at most 20 name: text pairs, none of {sorted(RESERVED_HEADERS)}")
        return problems

    def __init__(self, spec: DestinationSpec, settings: Settings) -> None:
        self.spec = spec
        self.url = spec.settings["url"]
        self.secret = spec.settings.get("secret")
        self.headers = dict(spec.settings.get("headers", {}))
        self.poster = Poster(settings)

    async def start(self) -> None:
        pass

    async def deliver(self, items: list[Item], batch_id: str) -> Outcome:
        body = orjson.dumps({"batch_id": batch_id, "project": self.spec.project_id, "destination": self.spec.name,
                             "sent_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                             "events": [item.event for item in items]})
        headers = {**self.headers, "Idempotency-Key": batch_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, int(time.time()), body)
        return await self.poster.post(self.url, body, headers)

    async def stop(self) -> None:
        await self.poster.close()
