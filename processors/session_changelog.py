"""The sessionizer's changelog record: one visitor's state, as compact as it can be read back.

A poll writes one record per visitor it touched, so under load the changelog carries about as many
records as there are events; its size is the sessionizer's largest cost after the events themselves,
and it is what a restore reads. The value is a JSON array with the fields in a fixed order, the format
number first::

    [3, sessions, version, changed, last_ms, watermark_ms, recent, session, emitted]

- ``recent``: the visitor's last few message-id CRC32s, packed as little-endian uint32 in base64;
- ``session``: the open session's values in :data:`SESSION_FIELDS` order, or ``null``;
- ``emitted``: the changing part of the last row written for that session (:data:`EMITTED_FIELDS`),
  or ``null``; the rest of that row is the session's, which does not change while it is open.

Formats 1 (a JSON object of the state's fields) and 2 (the session without the times of its entry
and exit pages, taken then as its start and end, nor its bot flag) are still read, so a changelog written by an older
release restores.
"""

from __future__ import annotations

import base64
import operator
import struct

import orjson

from processors.sessions import VisitorState, session_row

FORMAT = 3
FORMAT_2_SESSION_FIELDS = (
    "id", "number", "start_ms", "end_ms", "events", "pageviews", "entry_page", "exit_page", "user_id",
    "referrer", "referrer_source", "referrer_medium", "utm_source", "utm_medium", "utm_campaign", "utm_term",
    "utm_content", "country", "device", "browser", "os",
)
SESSION_FIELDS = (*FORMAT_2_SESSION_FIELDS, "entry_ms", "exit_ms", "is_bot")
_session_values = operator.itemgetter(*SESSION_FIELDS)
# What may differ between an open session's last row and the session (indices in SESSION_COLUMNS)
EMITTED_FIELDS = {"visitor_id": 2, "user_id": 3, "start_ms": 4, "end_ms": 5, "pageviews": 8, "events": 9,
                  "entry_page": 10, "exit_page": 11}
_emitted_values = operator.itemgetter(*EMITTED_FIELDS.values())


def dump(state: VisitorState, watermark_ms: int) -> bytes:
    """The changelog value of ``state``."""
    session = state.session
    return orjson.dumps([
        FORMAT, state.sessions, state.version, state.changed, state.last_ms, watermark_ms,
        _pack(state.recent),
        None if session is None else _session_values(session),
        None if state.emitted is None else _emitted_values(state.emitted),
    ])


def load(value: bytes, project_id: str) -> tuple[VisitorState, int]:
    """The state a changelog value holds, and the project's watermark when it was written. Raises
    ``ValueError`` on a value that is neither format."""
    saved = orjson.loads(value)
    if isinstance(saved, dict):  # format 1
        watermark = saved.pop("watermark_ms", 0)
        return VisitorState(**saved), watermark
    if not isinstance(saved, list) or len(saved) != 9 or saved[0] not in (2, FORMAT):
        raise ValueError("not a sessionizer changelog value")
    version_of_format, sessions, version, changed, last_ms, watermark, recent, values, emitted = saved
    state = VisitorState(sessions=sessions, version=version, changed=changed, last_ms=last_ms,
                         recent=_unpack(recent))
    if values is not None and version_of_format == 2:
        state.session = dict(zip(FORMAT_2_SESSION_FIELDS, values))
        state.session.update(entry_ms=state.session["start_ms"], exit_ms=state.session["end_ms"], is_bot=False)
    elif values is not None:
        state.session = dict(zip(SESSION_FIELDS, values))
    if emitted is not None and state.session is not None:
        state.emitted = _emitted_row(project_id, state, dict(zip(EMITTED_FIELDS, emitted)))
    return state, watermark


def _emitted_row(project_id: str, state: VisitorState, changing: dict) -> list:
    assert state.session is not None  # only an open session has an emitted row
    as_emitted = VisitorState(version=state.version, session={**state.session, **changing})
    return session_row(project_id, changing["visitor_id"], as_emitted, 1)


def _pack(digests: list[int]) -> str:
    return base64.b64encode(struct.pack(f"<{len(digests)}I", *digests)).decode()


def _unpack(text: str) -> list[int]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))
