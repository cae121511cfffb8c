"""The compact format that Headwater's own tracking script sends to ``POST /v1/hw``.

It is sent as ``text/plain`` so that ``navigator.sendBeacon`` works and browsers send no CORS
preflight. Short names keep the script small; the collector expands each event into an ordinary
Segment event, which is then checked and stamped like any other::

    {"k": "<public write key>", "s": <sentAt, epoch ms>,
     "e": [{"t": "p" | "t" | "i",            page, track or identify
            "n": "<event or page name>", "p": {properties}, "tr": {traits},
            "a": "<anonymousId>", "u": "<userId>", "m": "<messageId>", "ts": <timestamp, epoch ms>,
            "c": {"u": url, "r": referrer, "ti": title, "sw": screen width, "sh": screen height,
                  "l": language, "tz": time zone}}]}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from collector.errors import ApiError
from headwater.schemas import load_schema
from headwater.timeutil import iso_ms

TYPES = {"p": "page", "t": "track", "i": "identify"}
LIBRARY = {"name": "headwater.js"}


MAX_EPOCH_MS = 99_999_999_999_999


@dataclasses.dataclass
class Invalid:
    """A compact event that broke ``schemas/headwater/compact_event``; reported, never expanded."""

    problems: list[dict]


def _context(raw: dict) -> dict:
    context: dict = {"library": LIBRARY}
    if any(k in raw for k in ("u", "r", "ti")):
        context["page"] = {"url": raw.get("u"), "referrer": raw.get("r"), "title": raw.get("ti")}
    if "sw" in raw or "sh" in raw:
        context["screen"] = {"width": raw.get("sw"), "height": raw.get("sh")}
    if "l" in raw:
        context["locale"] = raw["l"]
    if "tz" in raw:
        context["timezone"] = raw["tz"]
    return context


def expand_event(raw: Any, sent_at: int | None) -> dict | Invalid:
    """One compact event as a Segment event, or :class:`Invalid` with the reasons."""
    schema = load_schema("headwater", "compact_event", "1-0-0")
    if not schema.is_valid(raw):
        return Invalid(schema.errors(raw))
    kind = TYPES[raw["t"]]
    event = {"type": kind, "properties": raw.get("p") or {}, "context": _context(raw.get("c") or {})}
    for short, name in (("a", "anonymousId"), ("u", "userId"), ("m", "messageId"), ("tr", "traits")):
        if raw.get(short) is not None:
            event[name] = raw[short]
    if raw.get("n") is not None:
        event["event" if kind == "track" else "name"] = raw["n"]
    if raw.get("ts") is not None:
        event["timestamp"] = iso_ms(int(raw["ts"]))
    if sent_at is not None:
        event["sentAt"] = iso_ms(int(sent_at))
    return event


def is_epoch_ms(value: object) -> bool:
    """A whole number of milliseconds in range (JSON Schema counts 1.0 as an integer too)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value)
            and 0 < value <= MAX_EPOCH_MS)


def _invalid(field: str, reason: str) -> ApiError:
    return ApiError(400, "invalid_envelope", f"{field} {reason}", [{"field": field, "reason": reason}])


def expand(payload: dict) -> dict:
    """The compact body as a Segment batch body (``writeKey`` from ``k``)."""
    events, sent_at, key = payload.get("e"), payload.get("s"), payload.get("k")
    if not isinstance(events, list) or not events:
        raise _invalid("e", "must be a non-empty list of events")
    if "s" in payload and not is_epoch_ms(sent_at):
        raise _invalid("s", "must be milliseconds since 1970 (an integer)")
    if "k" in payload and not isinstance(key, str):
        raise _invalid("k", "must be a string")
    batch = [expand_event(event, sent_at) for event in events]
    return {"batch": batch, **({"writeKey": key} if key else {})}
