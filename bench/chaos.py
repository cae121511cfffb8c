"""`make chaos`: faults while events flow, then proof that no acknowledged event was lost or doubled.

It starts a whole pipeline of its own (``.local/chaos``, ports apart from `make up`'s and the tests'),
creates a project, and sends events in batches of 50 with known message ids from a sender thread,
recording which batches were answered 200. Meanwhile, one phase per fault:

- ``kill -9`` and restart, in turn: the collector, the mediator, the process running validate, enrich
  and anonymize, the sessionizer, the indexer, the forwarder; then those three steps are swapped for one process
  each (the same consumer groups), each is killed in turn, and they stay for the faults that follow;
- a restart of the Kafka broker;
- ClickHouse stopped for ``CHAOS_CLICKHOUSE_DOWN_S`` (default 30) seconds, then started again.

A role that exits by itself after a fault is restarted too (as a supervisor would) and reported. After
the load, it waits until every consumer group has caught up, then checks in ClickHouse: every event
answered 200 is stored exactly once, nothing is stored that was not sent, every event has a session,
and the sessions table agrees with the events. The project has a webhook destination (a receiver in a
process of its own, bench/receiver.py): every event answered 200 must have reached it at least once
(copies are allowed: webhooks are at least once, and counted). Figures per fault go to bench/results/chaos.json; the
exit status is 1 when anything was lost, doubled or inconsistent.

Environment: CHAOS_RATE (events per second, default 1000), CHAOS_PHASE_S (seconds of traffic around
each fault, default 6).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import httpx

from bench.run import RESULTS, GroupProgress
from bench.steady import Sender
from commands.roles import COLOCATED
from devstack.stack import Stack
from headwater.clickhouse import make_client
from headwater.destinations import destination_group
from headwater.flow import INDEX_STEP, PROCESSOR_STEPS
from headwater.settings import get_settings
from headwater.topics import dead_letter_topic, processor_group, raw_topic, sessions_topic, step_topic

# Ports below Linux's ephemeral range (32768 and up): a server restarted mid-run must find its port
# free, not taken by some client's outgoing connection.
CHAOS_SETTINGS = {"local_dir": ".local/chaos", "kafka_bootstrap": "127.0.0.1:27092", "kafka_controller_port": 27093,
                  "clickhouse_port": 27000, "clickhouse_http_port": 27123, "collector_port": 27080,
                  "admin_port": 27081, "dashboard_port": 27082, "local_metrics_port": 27400, "admin_token": "chaos-admin-token",
                  "rate_limit_ip_rps": 0, "rate_limit_project_eps": 0, "produce_timeout_s": 3.0,
                  "forward_private_networks": True, "forward_max_backoff_s": 2.0}
RECEIVER_PORT = 27981
DESTINATION = "chaos-hook"
STATELESS = [f"processor-{s}" for s in PROCESSOR_STEPS if s != "sessionize"]
# The local stack runs validate, enrich and anonymize in one process (COLOCATED); before the first of
# STATELESS is killed, it is swapped for one process per step, which stay for the faults after them.
ROLES = ["collector", "mediator", COLOCATED, "processor-sessionize", "indexer", "forwarder", *STATELESS]


def kill_and_restart(stack: Stack, name: str) -> None:
    child = stack.child(name)
    child.proc.kill()  # kill -9
    child.proc.wait()
    stack.restart(name)  # starts it again, and waits for the collector to be ready


def supervise(stack: Stack, restarted: list[str], phase: str) -> None:
    """Restart any role that exited by itself, as a supervisor would, and note it."""
    for child in stack.services:
        if not child.alive():
            restarted.append(f"{child.name} (exited {child.proc.returncode} during {phase})")
            child.start(stack.env)


def inject(stack: Stack, sender: Sender, phase_s: float, down_s: float) -> list[str]:
    restarted: list[str] = []
    time.sleep(phase_s)
    for fault in [*ROLES, "kafka", "clickhouse"]:
        sender.phase = fault
        if fault == STATELESS[0]:
            stack.switch_layout(colocate_stateless_steps=False)
        time.sleep(phase_s / 2)
        print(f"fault: {fault}", flush=True)
        if fault == "kafka":
            stack.restart("kafka")
        elif fault == "clickhouse":
            stack.child("clickhouse").stop()
            time.sleep(down_s)
            stack.restart("clickhouse")
        else:
            kill_and_restart(stack, fault)
        time.sleep(phase_s / 2)
        supervise(stack, restarted, fault)
    sender.phase = "after"
    time.sleep(phase_s)
    return restarted


async def caught_up(settings, timeout_s: float = 600) -> bool:
    pairs = [("headwater-mediator", raw_topic(settings))]
    pairs += [(processor_group(s), step_topic(settings, s)) for s in PROCESSOR_STEPS]
    pairs += [("headwater-indexer-events", step_topic(settings, INDEX_STEP)),
              ("headwater-indexer-sessions", sessions_topic(settings)),
              ("headwater-indexer-failed-events", dead_letter_topic(settings)),
              (destination_group("chaos", DESTINATION), step_topic(settings, INDEX_STEP))]
    deadline = time.monotonic() + timeout_s
    async with GroupProgress(settings) as progress:
        while time.monotonic() < deadline:
            positions = [await progress.position(group, topic) for group, topic in pairs]
            # transactional topics end past their last commit marker: allow one offset per partition
            if all(end - done <= settings.topic_partitions for done, end in positions):
                return True
            await asyncio.sleep(1)
    return False


def check_destination(sender: Sender) -> dict:
    """What the webhook destination received, against what the collector acknowledged."""
    received = httpx.get(f"http://127.0.0.1:{RECEIVER_PORT}/ids", timeout=30).json()
    ours = {m: n for m, n in received.items() if m and m.startswith(sender.run_id + "-")}
    return {"destination_received": len(ours), "destination_lost": len(sender.acked - set(ours)),
            "destination_copies": sum(n - 1 for n in ours.values())}


def check(settings, db: str, sender: Sender) -> dict:
    client = make_client(settings)
    try:
        stored = dict(client.execute(
            f"SELECT message_id, count() FROM {db}.events WHERE startsWith(message_id, %(run)s) GROUP BY message_id",
            {"run": sender.run_id + "-"}))
        without_session = client.execute(
            f"SELECT count() FROM {db}.events WHERE startsWith(message_id, %(run)s) AND session_id = ''",
            {"run": sender.run_id + "-"})[0][0]
        from_events = dict(client.execute(
            f"SELECT session_id, uniqExact(message_id) FROM {db}.events WHERE startsWith(message_id, %(run)s) "
            "GROUP BY session_id",
            {"run": sender.run_id + "-"}))
        from_sessions = dict(client.execute(
            f"SELECT session_id, sum(sign * events) FROM {db}.sessions GROUP BY session_id HAVING sum(sign) > 0"))
    finally:
        client.disconnect()
    per_phase: dict = defaultdict(lambda: Counter())
    for message_id, phase in sender.sent.items():
        row = per_phase[phase]
        row["sent"] += 1
        row["acknowledged"] += message_id in sender.acked
        row["found"] += message_id in stored
        row["lost"] += message_id in sender.acked and message_id not in stored
        row["duplicated"] += max(stored.get(message_id, 0) - 1, 0)
    mismatched = [s for s, n in from_events.items() if from_sessions.get(s) != n]
    return {
        "per_fault": {phase: dict(row) for phase, row in per_phase.items()},
        "acknowledged": len(sender.acked), "found": len(stored),
        "lost": len(sender.acked - set(stored)), "duplicated": sum(max(n - 1, 0) for n in stored.values()),
        "stored_but_never_sent": len(set(stored) - set(sender.sent)),
        "events_without_session": without_session,
        "sessions": len(from_events), "sessions_disagreeing_with_events": len(mismatched),
    }


def main() -> None:
    rate = float(os.environ.get("CHAOS_RATE", 1000))
    phase_s = float(os.environ.get("CHAOS_PHASE_S", 6))
    down_s = float(os.environ.get("CHAOS_CLICKHOUSE_DOWN_S", 30))
    settings = dataclasses.replace(get_settings(), **CHAOS_SETTINGS)
    shutil.rmtree(settings.local_path, ignore_errors=True)
    stack = Stack(settings)
    started = time.monotonic()
    receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", "--port", str(RECEIVER_PORT), "--ids"])
    stack.start()
    try:
        admin = {"Authorization": f"Bearer {settings.admin_token}"}
        reply = httpx.post(f"{stack.admin_url}/v1/projects", json={"id": "chaos", "origins": []},
                           headers=admin, timeout=30)
        reply.raise_for_status()
        key = reply.json()["keys"]["server_key"]
        hook = {"name": DESTINATION, "type": "webhook", "settings": {"url": f"http://127.0.0.1:{RECEIVER_PORT}/in"}}
        httpx.patch(f"{stack.admin_url}/v1/projects/chaos/config", json={"destinations": [hook]}, headers=admin,
                    timeout=30).raise_for_status()
        sender = Sender(stack.collector_url, key, f"chaos{uuid.uuid4().hex[:6]}", rate)
        sender.start()
        restarted = inject(stack, sender, phase_s, down_s)
        sender.stopping.set()
        sender.join()
        supervise(stack, restarted, "drain")
        drained = asyncio.run(caught_up(settings))
        # open sessions' last changes are written up to session_row_interval_s later: then catch up again
        time.sleep(settings.session_row_interval_s + 1)
        drained = drained and asyncio.run(caught_up(settings))
        result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "rate": rate,
                  "drained": drained, "restarted_after_exiting": restarted,
                  "statuses": {f"{p}:{s}": n for (p, s), n in sorted(sender.statuses.items(), key=str)},
                  **check(settings, "hw_chaos", sender), **check_destination(sender),
                  "seconds": round(time.monotonic() - started, 1)}
    finally:
        stack.stop()
        receiver.terminate()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chaos.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = drained and not (result["lost"] or result["duplicated"] or result["stored_but_never_sent"]
                          or result["destination_lost"]
                          or result["events_without_session"] or result["sessions_disagreeing_with_events"])
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
