"""`make bench`: starts the pipeline if it is not running, runs the load generator as a separate
process, waits until every acknowledged event is queryable, and writes bench/results/latest.json.

Environment: BENCH_EVENTS (default 200000) is the number of events in the flat-out phases, a tenth of
them as single-event requests and the rest in batches of 100.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from headwater.clickhouse import make_client, project_database
from headwater.devstack.stack import Stack, http_ok
from headwater.settings import Settings, get_settings

RESULTS = Path(__file__).resolve().parent / "results"


def run_loadgen(settings: Settings, url: str, run: str, events: int) -> dict:
    single = events // 10
    argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--key", settings.default_write_key,
            "--run", run, "--single", str(single), "--batched", str(events - single)]
    done = subprocess.run(argv, capture_output=True)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    return json.loads(done.stdout)


def wait_indexed(settings: Settings, run: str, expected: int, stall_s: float = 120) -> tuple[float, int, int]:
    """Poll until ``expected`` distinct ids of this run are queryable; return (time, rows, distinct)."""
    client = make_client(settings)
    table = f"{project_database(settings.default_project)}.events"
    query = f"SELECT count(), uniqExact(message_id) FROM {table} WHERE startsWith(message_id, '{run}-')"
    last, last_change = -1, time.monotonic()
    while True:
        rows, distinct = client.execute(query)[0]
        if distinct >= expected:
            return time.perf_counter(), rows, distinct
        if distinct != last:
            last, last_change = distinct, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            return time.perf_counter(), rows, distinct
        time.sleep(0.2)


def latency_quantiles(settings: Settings, run: str) -> dict:
    client = make_client(settings)
    table = f"{project_database(settings.default_project)}.events"
    p50, p99 = client.execute(
        "SELECT quantilesExact(0.5, 0.99)(toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(received_at)) "
        f"FROM {table} WHERE startsWith(message_id, '{run}-')"
    )[0][0]
    return {"p50": float(p50), "p99": float(p99)}


def peak_rss_mb(settings: Settings) -> dict:
    """Peak resident memory (VmHWM) of each running service, from the stack's pid file."""
    pid_file = settings.local_path / "stack.json"
    result = {}
    for name, pid in json.loads(pid_file.read_text()).items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        result[name] = round(kb / 1024, 1)
    return result


def measure(settings: Settings, url: str, events: int) -> dict:
    run = f"bench{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    load = run_loadgen(settings, url, run, events)
    phases = ("single", "batch", "single_half_load")
    acked = set().union(*(load[p].pop("acked") for p in phases))
    indexed_at, rows, distinct = wait_indexed(settings, run, len(acked))
    sent = sum(load[p]["requests"] if p != "batch" else load[p]["events_acked"] for p in phases)
    return {
        "run": run,
        "events_sent": sent,
        "events_acked": len(acked),
        "events_per_s": round(len(acked) / (indexed_at - started), 1),
        "collector_requests_per_s": load["single"]["requests_per_s"],
        "collector_batched_events_per_s": load["batch"]["events_per_s"],
        "collector_p99_ms_at_half_load": load["single_half_load"]["p99_ms"],
        "ingest_to_queryable_ms": latency_quantiles(settings, run),
        "lost": len(acked) - min(distinct, len(acked)),
        "duplicates": rows - distinct,
        "rss_mb": peak_rss_mb(settings),
        "phases": load,
    }


def main() -> None:
    settings = get_settings()
    events = int(os.environ.get("BENCH_EVENTS", "200000"))
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    stack = None
    if not http_ok(url + "/readyz"):
        print("starting the pipeline ...", flush=True)
        stack = Stack(settings)
        stack.start()
    try:
        result = measure(settings, url, events)
    finally:
        if stack:
            stack.stop()
    result.update(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"), cores=os.cpu_count(),
        machine=platform.machine(), events_requested=events,
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "phases"}, indent=2))


if __name__ == "__main__":
    main()
