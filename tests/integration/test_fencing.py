"""Exactly once across a replaced sessionizer: a replica that stalls in the middle of a transaction
while another starts with the same transactional id (a restarted pod of a StatefulSet) is fenced.
Its open transaction is aborted, its late commit refused, and every event lands once, in the session
an independent computation gives it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.helpers import Admin, count_rows, wait_for
from tests.integration.test_sessions import expected_sessions, generate, send

pytestmark = pytest.mark.integration
HOLD_S = 20  # the stalled replica waits this long between its transaction's sends and its commit


def start_replica(stack, name: str, **environment: str) -> tuple[subprocess.Popen, object]:
    log_path = stack.child("processor-sessionize").log_path.with_name(f"processor-sessionize-{name}.log")
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "headwater", "processor", "sessionize"],
                                   env={**stack.env, **environment}, stdout=log, stderr=subprocess.STDOUT)
    return process, log_path


def test_a_stalled_replica_is_fenced_by_its_successor_and_nothing_counts_twice(stack, settings, clickhouse):
    created = Admin(settings).create_project()
    key, db = created["keys"]["server_key"], created["project"]["database"]
    events = generate(visitors=80, seed=23)
    shared = {"HEADWATER_INSTANCE_ID": "fencing-test"}
    zombie, zombie_log = start_replica(stack, "zombie", **shared, HEADWATER_SESSIONIZE_FAULT_HOLD_S=str(HOLD_S))
    successor = None
    try:
        wait_for(lambda: b"state_restored" in zombie_log.read_bytes(), timeout_s=60)  # it owns partitions
        send(stack, key, events)
        wait_for(lambda: b"fault_hold" in zombie_log.read_bytes(), timeout_s=60)  # mid-transaction, stalled
        successor, successor_log = start_replica(stack, "successor", **shared)
        assert zombie.wait(HOLD_S + 60) != 0  # its commit after the hold is refused: it stops
        assert b"fenced: a newer replica with the same instance_id" in zombie_log.read_bytes()
        wait_for(lambda: count_rows(clickhouse, db) >= len(events), timeout_s=120)
    finally:
        for process in (zombie, successor):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(60)

    rows = clickhouse.execute(f"SELECT message_id, session_id FROM {db}.events")
    assert len(rows) == len(events) == len({message_id for message_id, _ in rows})  # none twice, none lost
    got = defaultdict(list)
    for message_id, session in rows:
        got[session].append(message_id)
    assert sorted(map(sorted, got.values())) == sorted(map(sorted, expected_sessions(events)))
