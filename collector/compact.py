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

from collector.errors import ApiError
from headwater.timeutil import iso_ms

TYPES = {"p": "page", "t": "track", "i": "identify"}
LIBRARY = {"name": "headwater.js"}


def _time(value: object) -> str | object:
    return iso_ms(int(value)) if isinstance(value, (int, float)) and 0 < value < 10**14 else value


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


def expand_event(raw: object, sent_at: object) -> object:
    """One compact event as a Segment event; anything that is not an object is passed on to fail
    validation with a clear error."""
    if not isinstance(raw, dict):
        return raw
    kind = TYPES.get(raw.get("t"), raw.get("t"))
    event = {"type": kind, "properties": raw.get("p") or {}, "context": _context(raw.get("c") or {})}
    for short, name in (("a", "anonymousId"), ("u", "userId"), ("m", "messageId"), ("tr", "traits")):
        if raw.get(short) is not None:
            event[name] = raw[short]
    if raw.get("n") is not None:
        event["event" if kind == "track" else "name"] = raw["n"]
    if raw.get("ts") is not None:
        event["timestamp"] = _time(raw["ts"])
    if sent_at is not None:
        event["sentAt"] = _time(sent_at)
    return event


def expand(payload: dict) -> dict:
    """The compact body as a Segment batch body."""
    events = payload.get("e")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "invalid_envelope", "e must be a non-empty list of events",
                       [{"field": "e", "reason": "must be a non-empty list"}])
    batch = [expand_event(event, payload.get("s")) for event in events]
    key = payload.get("k")
    return {"batch": batch, **({"writeKey": key} if isinstance(key, str) else {})}
