"""Session rules as a pure function of a visitor's events."""

from __future__ import annotations

from headwater.envelope import Envelope
from processors.sessions import SessionOptions, VisitorState, session_id

MIN = 60_000
OPTIONS = SessionOptions(timeout_ms=30 * MIN, max_length_ms=24 * 60 * MIN, split_on_campaign=True)


def event(ts_min: int, kind: str = "page", path: str = "/", campaign: str = "") -> tuple[Envelope, int]:
    envelope = Envelope("shop", f"m{ts_min}", 0, "r", {"type": kind, "anonymousId": "v"})
    envelope.enriched["page"] = {"path": path}
    if campaign:
        envelope.enriched["campaign"] = {"campaign": campaign}
    return envelope, ts_min * MIN


def run(*events) -> tuple[VisitorState, list]:
    state, results = VisitorState(), []
    for envelope, ts in events:
        result, _ = state.apply(envelope, ts, OPTIONS)
        results.append(result)
    return state, results


def test_inactivity_splits_and_ids_are_deterministic():
    _, results = run(event(0), event(10), event(41), event(50))
    assert [seq for _, seq in results] == [1, 2, 1, 2]
    assert results[0][0] == results[1][0] == session_id("shop", "v", 0)
    assert results[2][0] == session_id("shop", "v", 41 * MIN) != results[0][0]
    assert run(event(0), event(10), event(41), event(50))[1] == results  # same input, same sessions


def test_maximum_length_splits_a_long_session():
    state, results = run(*(event(m) for m in range(0, 25 * 60 + 1, 20)))
    assert len({sid for sid, _ in results}) == 2 and state.sessions == 2


def test_a_new_campaign_starts_a_new_session():
    _, results = run(event(0, campaign="spring"), event(5, campaign="spring"), event(6, campaign="summer"))
    assert results[1][0] == results[0][0] != results[2][0]


def test_out_of_order_event_joins_and_moves_the_start():
    state, results = run(event(10, path="/b"), event(20, path="/c"), event(5, path="/a"))
    assert len({sid for sid, _ in results}) == 1
    assert state.session["start_ms"] == 5 * MIN and state.session["entry_page"] == "/a"
    assert state.session["exit_page"] == "/c" and state.session["pageviews"] == 3


def test_an_event_of_an_earlier_closed_session_is_too_late():
    _, results = run(event(100), event(10))
    assert results[1] is None


def test_rows_cancel_the_previous_version():
    state, _ = run(event(0), event(1, kind="track"))
    first = state.rows("shop", "v")
    assert [row[-2:] for row in first] == [[1, 1]]
    state.apply(*event(2), OPTIONS)
    second = state.rows("shop", "v")
    assert [row[-2:] for row in second] == [[-1, 1], [1, 2]]
    assert second[0][:-2] == first[0][:-2]  # the cancel row repeats the old row exactly
    assert state.rows("shop", "v") == []  # nothing changed since


def test_bounce_new_visitor_and_closed_session_rows():
    state, _ = run(event(0))
    row = state.rows("shop", "v")[0]
    is_bounce, is_new = row[-4], row[-3]
    assert is_bounce and is_new
    _, closed = state.apply(*event(100), OPTIONS)
    assert closed == []  # the first session's row was already current
    state.apply(*event(101), OPTIONS)
    row = state.rows("shop", "v")[-1]
    assert not row[-4] and not row[-3]  # two events; the visitor's second session
