"""Sessions in the running pipeline, across a kill -9 of the sessionizer: every event gets the
session an independent computation gives it, and the sessions table matches, with nothing split or
counted twice."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)
TIMEOUT = timedelta(minutes=30)


def generate(visitors: int, seed: int = 7) -> list[dict]:
    """Events for each visitor with gaps that sometimes exceed the timeout, in global time order."""
    rng, events = random.Random(seed), []
    for v in range(visitors):
        ts = T0 + timedelta(minutes=rng.randint(0, 60))
        for n in range(rng.randint(3, 12)):
            ts += timedelta(minutes=rng.choice([1, 2, 5, 10, 29, 31, 45]))
            events.append({"type": "page", "anonymousId": f"visitor-{v}", "messageId": str(uuid.uuid4()),
                           "timestamp": ts.isoformat().replace("+00:00", "Z"), "name": f"p{n}",
                           "context": {"page": {"url": f"https://shop.example/p/{n}"}}})
    return sorted(events, key=lambda e: e["timestamp"])


def expected_sessions(events: list[dict]) -> list[list[str]]:
    """The message ids of each session, computed independently: a gap over 30 minutes splits."""
    by_visitor = defaultdict(list)
    for event in events:
        by_visitor[event["anonymousId"]].append(event)
    sessions = []
    for visitor_events in by_visitor.values():
        current, last = [], None
        for event in visitor_events:
            ts = datetime.fromisoformat(event["timestamp"])
            if last is not None and ts - last > TIMEOUT:
                sessions.append(current)
                current = []
            current.append(event["messageId"])
            last = ts
        sessions.append(current)
    return sessions


def send(stack, key: str, events: list[dict]) -> None:
    for start in range(0, len(events), 50):
        reply = post(stack.collector_url, "/v1/batch", {"batch": events[start:start + 50]}, key)
        assert reply.status_code == 200, reply.text


def test_sessions_survive_kill_9_and_match_an_independent_computation(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    events = generate(visitors=60)
    half = len(events) // 2
    send(stack, key, events[:half])
    wait_for(lambda: count_rows(clickhouse, db) > 0, timeout_s=60)
    sessionizer = stack.child("processor-sessionize")
    sessionizer.proc.kill()  # kill -9, mid-stream
    sessionizer.proc.wait()
    send(stack, key, events[half:])
    stack.restart("processor-sessionize")

    expected = expected_sessions(events)
    wait_for(lambda: count_rows(clickhouse, db) == len(events), timeout_s=120)
    rows = clickhouse.execute(f"SELECT message_id, session_id, session_seq FROM {db}.events")
    assert len({m for m, _, _ in rows}) == len(events)
    got = defaultdict(list)
    for message_id, session, _ in sorted(rows, key=lambda r: r[2]):
        got[session].append(message_id)
    assert "" not in got  # no event was left without a session
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, expected))
    # sequence numbers run 1..n inside every session
    assert all(sorted(s for _, sid, s in rows if sid == session) == list(range(1, len(ids) + 1))
               for session, ids in got.items())

    def table():
        return clickhouse.execute(
            f"SELECT session_id, sum(sign), sum(events * sign), sum(pageviews * sign) FROM {db}.sessions "
            "GROUP BY session_id HAVING sum(sign) != 0")

    def matches():
        found = {sid: (sign, n, p) for sid, sign, n, p in table()}
        return len(found) == len(expected) and all(
            found.get(sid) == (1, len(ids), len(ids)) for sid, ids in got.items())

    wait_for(matches, timeout_s=60)
    final = clickhouse.execute(f"SELECT count(), countIf(is_new_visitor) FROM {db}.sessions FINAL")[0]
    assert final == (len(expected), 60)


def test_state_moves_when_the_sessionizer_scales_out_and_in(stack, settings, clickhouse):
    import signal
    import subprocess
    import sys

    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    events = generate(visitors=60, seed=11)
    third = len(events) // 3
    send(stack, key, events[:third])
    wait_for(lambda: count_rows(clickhouse, db) > 0, timeout_s=60)
    log_path = stack.child("processor-sessionize").log_path.with_name("processor-sessionize-2.log")
    with open(log_path, "ab") as log:  # a second replica, with its own transactional id
        second = subprocess.Popen([sys.executable, "-m", "headwater", "processor", "sessionize"],
                                  env={**stack.env, "HEADWATER_INSTANCE_ID": "replica-2"}, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        # the new replica has joined the group and restored the state of the partitions it took over
        wait_for(lambda: b"state_restored" in log_path.read_bytes(), timeout_s=60)
        send(stack, key, events[third:2 * third])
        wait_for(lambda: count_rows(clickhouse, db) >= 2 * third, timeout_s=90)
    finally:
        second.send_signal(signal.SIGTERM)  # scale back in: its partitions return to the first replica
        assert second.wait(60) == 0
    send(stack, key, events[2 * third:])
    wait_for(lambda: count_rows(clickhouse, db) == len(events), timeout_s=120)

    rows = clickhouse.execute(f"SELECT message_id, session_id FROM {db}.events")
    got = defaultdict(list)
    for message_id, session in rows:
        got[session].append(message_id)
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, expected_sessions(events)))
