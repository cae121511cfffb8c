"""Sessions as a pure, deterministic function of a visitor's events in arrival order.

Rules, on event time (the event's skew-corrected ``timestamp``), never wall-clock time:

- a visitor's first event, or one more than ``timeout`` after the session's last event, or one that
  would make the session longer than ``max_length``, or (with ``split_on_campaign``) one whose page
  carries a different UTM campaign, starts a new session;
- an event older than the session's last event (out of order) belongs to that session while it is
  no more than ``timeout`` before the session's start; it can move the start (and entry page)
  earlier;
- an event that belongs to an earlier, already closed session, or that is older than the
  partition's watermark (the newest event time seen, but never past the time that event was received,
  minus ``allowed_lateness``) while its visitor has
  no open session, is *too late*: it is stored in ``events`` without a session (``session_id`` empty)
  and counted.

The session id is a hash of (project, visitor, start of the session as first seen), so the same input
gives the same sessions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib

from headwater.envelope import Envelope
from headwater.options import check_options
from headwater.projects.model import Project
from headwater.settings import Settings
from headwater.timeutil import epoch_ms

SESSION_OPTIONS = {"timeout_s", "max_length_s", "split_on_campaign"}


@dataclasses.dataclass(frozen=True)
class SessionOptions:
    timeout_ms: int = 30 * 60 * 1000
    max_length_ms: int = 24 * 3600 * 1000
    split_on_campaign: bool = True

    @classmethod
    def of(cls, settings: Settings, project: Project | None) -> SessionOptions:
        raw = project.sessions if project else {}
        return cls(int(raw.get("timeout_s", settings.session_timeout_s) * 1000),
                   int(raw.get("max_length_s", settings.session_max_length_s) * 1000),
                   bool(raw.get("split_on_campaign", settings.session_split_on_campaign)))


def check_sessions(raw: object) -> list[str]:
    errors = check_options("sessions", raw, SESSION_OPTIONS, flags=("split_on_campaign",))
    if not isinstance(raw, dict):
        return errors
    for name in ("timeout_s", "max_length_s"):
        value = raw.get(name, 1)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            errors.append(f"sessions.{name} must be a positive number of seconds")
    return errors


def check_project(project: Project) -> list[str]:
    return check_sessions(project.sessions)


def session_id(project_id: str, visitor_id: str, start_ms: int) -> str:
    return "s_" + hashlib.blake2b(f"{project_id}|{visitor_id}|{start_ms}".encode(), digest_size=10).hexdigest()


def event_time_ms(envelope: Envelope) -> int:
    return epoch_ms(envelope.event.get("timestamp")) or envelope.received_at_ms


def _page(envelope: Envelope) -> str:
    """The page a pageview shows: a page's path, a screen's name."""
    path = (envelope.enriched.get("page") or {}).get("path")
    if not path and envelope.event.get("type") == "screen":
        path = envelope.event.get("name")
    return str(path or "")


def _is_pageview(envelope: Envelope) -> bool:
    return envelope.event.get("type") in ("page", "screen")


def new_session(envelope: Envelope, ts: int, number: int) -> dict:
    """A session's first state, taking its acquisition and device facts from its first event."""
    derived = envelope.enriched
    ref, utm = derived.get("referrer") or {}, derived.get("campaign") or {}
    ua, geo = derived.get("ua") or {}, derived.get("geo") or {}
    return {
        "id": session_id(envelope.project_id, envelope.visitor_id, ts), "number": number,
        "start_ms": ts, "end_ms": ts, "events": 0, "pageviews": 0, "entry_page": "", "exit_page": "",
        "entry_ms": ts, "exit_ms": ts,
        "user_id": str(envelope.event.get("userId") or ""),
        "referrer": ref.get("url", ""), "referrer_source": ref.get("source", ""),
        "referrer_medium": ref.get("medium", ""), "utm_source": utm.get("source", ""),
        "utm_medium": utm.get("medium", ""), "utm_campaign": utm.get("campaign", ""),
        "utm_term": utm.get("term", ""), "utm_content": utm.get("content", ""),
        "country": geo.get("country", ""), "device": ua.get("device", ""), "browser": ua.get("browser", ""),
        "os": ua.get("os", ""), "is_bot": bool(ua.get("is_bot", False)),
    }


VISIT_EVENT_FIELDS = ("type", "anonymousId", "userId", "timestamp")
VISIT_ENRICHED_FIELDS = ("referrer", "campaign", "ua", "geo", "previous_visitor_id", "partition_key")


def visit(envelope: Envelope) -> dict:
    """What sessionizing reads of an event, as an envelope of its own (under half the bytes, and far
    fewer objects to decode): the step before the sessionizer sends these beside the events, so the
    sessionizer decodes these instead of the events and passes the events on as they came (see
    processors/sessionize.py)."""
    event, enriched = envelope.event, envelope.enriched
    derived = {name: enriched[name] for name in VISIT_ENRICHED_FIELDS if name in enriched}
    if page := _page(envelope):
        derived["page"] = {"path": page}
    return {"project_id": envelope.project_id, "message_id": envelope.message_id,
            "received_at_ms": envelope.received_at_ms, "request_id": "",
            "event": {name: event[name] for name in VISIT_EVENT_FIELDS if name in event}, "enriched": derived}


RECENT_IDS = 16  # message ids remembered per visitor to recognise copies


@dataclasses.dataclass
class VisitorState:
    """What the sessionizer keeps per (project, visitor); saved to the changelog after each batch."""

    sessions: int = 0  # sessions started so far: the first one is the visitor's first visit
    session: dict | None = None  # the open session
    version: int = 0  # of the last session row emitted
    emitted: list | None = None  # that row (sign +1), so it can be cancelled
    changed: bool = False  # the open session changed since its last row was emitted
    last_ms: int = 0  # end of the last closed session (for forgetting idle visitors)
    recent: list = dataclasses.field(default_factory=list)  # crc32 of the last RECENT_IDS message ids

    def seen(self, message_id: str) -> bool:
        """Whether this message id is among the visitor's last few events, remembering it if not: a
        copy (a client's retry, or a batch an upstream step delivered again after a crash) must not be
        counted twice in the session."""
        digest = zlib.crc32(message_id.encode())
        if digest in self.recent:
            return True
        self.recent = [*self.recent[-(RECENT_IDS - 1):], digest]
        return False

    def starts_new(self, envelope: Envelope, ts: int, options: SessionOptions) -> bool:
        session = self.session
        if session is None or ts - session["end_ms"] > options.timeout_ms:
            return True
        if ts - session["start_ms"] > options.max_length_ms:
            return True
        campaign = (envelope.enriched.get("campaign") or {}).get("campaign", "")
        return options.split_on_campaign and bool(campaign) and campaign != session["utm_campaign"]

    def apply(self, envelope: Envelope, ts: int, options: SessionOptions) -> tuple[tuple[str, int] | None, list]:
        """Add the event. Return its (session id, sequence number in the session), or ``None`` when it
        belongs to an earlier session that is already closed; and the final rows of the session it
        closed, if it started a new one."""
        session = self.session
        closed: list[list] = []
        if session is not None and ts < session["start_ms"] - options.timeout_ms:
            return None, closed
        out_of_order = session is not None and ts < session["end_ms"]
        if not out_of_order and self.starts_new(envelope, ts, options):
            closed = self.rows(envelope.project_id, envelope.visitor_id)
            self.sessions += 1
            session = self.session = new_session(envelope, ts, self.sessions)
            self.version, self.emitted = 0, None
        assert session is not None  # starts_new is true when no session is open
        session["events"] += 1
        if _is_pageview(envelope):
            session["pageviews"] += 1
            _place_page(session, _page(envelope), ts)
        session["start_ms"] = min(session["start_ms"], ts)
        session["end_ms"] = max(session["end_ms"], ts)
        if not session["user_id"] and envelope.event.get("userId"):
            session["user_id"] = str(envelope.event["userId"])
        self.changed = True
        return (session["id"], session["events"]), closed

    def rows(self, project_id: str, visitor_id: str) -> list[list]:
        """The rows that bring the ``sessions`` table up to date: the last emitted row cancelled (sign
        -1, same version) and the current state (sign +1, the next version)."""
        if not self.changed or self.session is None:
            return []
        rows = [self.emitted[:-2] + [-1, self.emitted[-1]]] if self.emitted else []
        self.version += 1
        self.emitted = session_row(project_id, visitor_id, self, 1)
        self.changed = False
        return [*rows, self.emitted]


def _place_page(session: dict, page: str, ts: int) -> None:
    """Entry and exit pages by event time, whatever order the pageviews arrive in: the entry page is
    the earliest pageview's, the exit page the latest's (on a tie, the first and the last to arrive).
    A pageview without a page (a screen without a name) changes neither."""
    if not page:
        return
    if not session["exit_page"] or ts >= session["exit_ms"]:
        session["exit_page"], session["exit_ms"] = page, ts
    if not session["entry_page"] or ts < session["entry_ms"]:
        session["entry_page"], session["entry_ms"] = page, ts


def session_row(project_id: str, visitor_id: str, state: VisitorState, sign: int) -> list:
    """One ``sessions`` row for the state's open session (in the order of
    ``headwater.migrations.columns.SESSION_COLUMNS``)."""
    s = state.session
    assert s is not None  # rows are written for open sessions only
    return [
        project_id, s["id"], visitor_id, s["user_id"], s["start_ms"], s["end_ms"],
        (s["end_ms"] - s["start_ms"]) // 1000, s["end_ms"] - s["start_ms"], s["pageviews"], s["events"],
        s["entry_page"], s["exit_page"],
        s["referrer"], s["referrer_source"], s["referrer_medium"], s["utm_source"], s["utm_medium"],
        s["utm_campaign"], s["utm_term"], s["utm_content"], s["country"], s["device"], s["browser"], s["os"],
        s["is_bot"], s["events"] == 1, s["number"] == 1, sign, state.version,
    ]
