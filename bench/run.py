"""`make bench`: end-to-end figures for the whole pipeline, written to bench/results/latest.json.

When no pipeline is running it starts one (as `make up` does, with rate limits off) in three steps:

1. **collector**: Kafka, ClickHouse and the collector alone. The load generator (a separate process)
   sends single-event requests flat out, batches of 100 flat out, then single events at half the
   single-event maximum. Nothing consumes meanwhile, so these are the collector's own figures.
2. **drain, in flow order**: the mediator starts alone and works off that backlog; when its consumer
   group has caught up, the validate processor starts on the backlog the mediator left, and so on
   to the indexer. Each role is timed from its first commit until it caught up, and its CPU time
   is read from /proc: events per second and per core-second for each role on its own.
3. **end to end**: a fresh load, all in batches of 100, posted while the pipeline runs, timed from
   the first POST until the last event is queryable; ingest-to-queryable latency under that burst
   (a backlog: queueing) comes from this step, and the CPU time every process (Kafka, ClickHouse and
   the load generator included) spent on it, per event.
4. **steady**: for ``BENCH_STEADY_S`` (30) seconds at each of ``BENCH_STEADY_RATES`` (1,000 and
   3,000 events/s, batches of 50), the ingest-to-queryable latency (``inserted_at - received_at``)
   when the pipeline keeps up; then as long at each of ``BENCH_HIGH_RATES`` (6,000, 10,000, 15,000 and 20,000
   events/s, batches of 100 from the load generator), up to near what the pipeline sustains, with
   where that time went hop by hop (:mod:`bench.stages`) and the CPU each process spent meanwhile.
5. **end to end, the other layout**: step 3 runs with the local stack's layout
   (``colocate_stateless_steps``, default: validate, enrich and anonymize in one process); then those
   steps are swapped for the other layout (one process per step; the same consumer groups) and step 3
   runs again. Step 2 always drains with one process per step.

Against a running pipeline (started by `make up`), step 1 runs with everything else running and step
2 is skipped; the result says so in ``isolated``.

Environment: BENCH_EVENTS (default 200000) is the size of step 1's load; a tenth of it goes as
single-event requests, the rest in batches of 100. BENCH_E2E_EVENTS (default 600000, about half a
minute at 20,000 events/s) is the size of each end-to-end load: long enough that the last batch's
way through the pipeline (a second or two while only the last stages work) does not dominate the
figure; that tail shows in ``ingest_to_queryable_ms``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench import wrk
from bench.stages import hop_latencies
from bench.state_memory import state_mb_per_100k_visitors
from bench.steady import Sender
from devstack.stack import Stack, http_ok
from headwater.clickhouse import make_client, project_database
from headwater.flow import INDEX_STEP, PROCESSOR_STEPS
from headwater.settings import Settings, get_settings
from headwater.topics import processor_group, raw_topic, step_topic

RESULTS = Path(__file__).resolve().parent / "results"
BENCH_DIR = ".local/bench"  # the stack the bench starts itself lives here, emptied at the start
PHASES = ("single", "batch", "single_half_load")
STEADY_RATES = [float(r) for r in os.environ.get("BENCH_STEADY_RATES", "1000,3000").split(",")]
STEADY_S = float(os.environ.get("BENCH_STEADY_S", 30))
HIGH_RATES = [float(r) for r in os.environ.get("BENCH_HIGH_RATES", "6000,10000,15000,20000").split(",") if r]
STALL_S = 120


def fresh_stack_settings(settings: Settings, local_dir: str) -> Settings:
    """Settings for a stack of a benchmark's own under ``local_dir``, emptied first, rate limits off."""
    settings = dataclasses.replace(settings, local_dir=local_dir, rate_limit_ip_rps=0, rate_limit_project_eps=0)
    shutil.rmtree(settings.local_path, ignore_errors=True)
    return settings


def run_loadgen(settings: Settings, url: str, run: str, events: int, batched_only: bool = False,
                rate: float = 0, single_only: bool = False) -> dict:
    """Post ``events``: a tenth as single events (then the half-load phase), the rest in batches of
    100; or all in batches, flat out or at ``rate`` events per second; or all as single events flat out."""
    single = events if single_only else 0 if batched_only else events // 10
    argv = [sys.executable, "-m", "bench.loadgen", "--url", url, "--key", settings.default_write_key,
            "--run", run, "--single", str(single), "--batched", str(events - single), "--batch-rate", str(rate)]
    if batched_only or single_only:
        argv += ["--half-load-s", "0"]
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "load.json"
        done = subprocess.run([*argv, "--out", str(out)], capture_output=True)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
        load = json.loads(out.read_bytes())
    load["acked"] = set().union(*(load[p].pop("acked") for p in PHASES))
    return load


def warm_up(settings: Settings, url: str, counter: Events, events: int = 200_000) -> None:
    """Send ``events`` in batches flat out and wait until all are queryable: a fresh stack's first
    load pays for caches, the broker's JIT and the first parts, which steady runs should not."""
    run = f"warm{uuid.uuid4().hex[:8]}"
    counter.wait_indexed(run, len(run_loadgen(settings, url, run, events, batched_only=True)["acked"]))


class Events:
    """Counting one run's events in ClickHouse."""

    def __init__(self, settings: Settings) -> None:
        self.client = make_client(settings)
        self.table = f"{project_database(settings.default_project)}.events"

    def counts(self, run: str) -> tuple[int, int]:
        return self.client.execute(
            f"SELECT count(), uniqExact(message_id) FROM {self.table} WHERE startsWith(message_id, '{run}-')")[0]

    def rows(self, run: str) -> int:
        return self.client.execute(f"SELECT count() FROM {self.table} WHERE startsWith(message_id, '{run}-')")[0][0]

    def wait_indexed(self, run: str, expected: int, stall_s: float = 120) -> tuple[float, int, int]:
        """Poll until ``expected`` distinct ids are queryable, or nothing moved for ``stall_s``. Every
        half second, counting rows (distinct ids only once there are enough): the polling shares the
        two cores with the pipeline it measures (at 0.1 s with ``uniqExact`` it cost ClickHouse a
        noticeable share), and adds at most half a second to the time measured."""
        last, last_change = -1, time.monotonic()
        while True:
            rows = self.rows(run)
            if rows >= expected:
                rows, distinct = self.counts(run)
                if distinct >= expected:
                    return time.perf_counter(), rows, distinct
            if rows != last:
                last, last_change = rows, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                return (time.perf_counter(), *self.counts(run))
            time.sleep(0.5)

    def latency(self, run: str) -> dict:
        p50, p99 = self.client.execute(
            "SELECT quantilesExact(0.5, 0.99)(toUnixTimestamp64Milli(inserted_at) - "
            f"toUnixTimestamp64Milli(received_at)) FROM {self.table} WHERE startsWith(message_id, '{run}-')"
        )[0][0]
        return {"p50": float(p50), "p99": float(p99)}


def peak_rss_mb(settings: Settings) -> dict:
    """Peak resident memory (VmHWM) of each running process of the stack, from its pid file."""
    result = {}
    for name, pid in stack_pids(settings).items():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
        result[name] = round(kb / 1024, 1)
    return result


def stack_pids(settings: Settings) -> dict[str, int]:
    return json.loads((settings.local_path / "stack.json").read_text())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples one process's CPU time (user + system) every 50 ms, to turn a phase's wall-clock
    window into CPU seconds: the per-core figure on a machine the collector shares."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(0.05):
            try:
                self.samples.append((time.time(), cpu_seconds(self.pid)))
            except OSError:
                return

    def __enter__(self) -> CpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def cpu_between(self, start: float, end: float) -> float:
        inside = [cpu for t, cpu in self.samples if start <= t <= end]
        return inside[-1] - inside[0] if len(inside) > 1 else 0.0


def per_core(load: dict, phase: str, sampler: CpuSampler | None, count: str) -> float | None:
    """Requests (or events) per CPU-second of the collector during ``phase``."""
    if sampler is None:
        return None
    cpu = sampler.cpu_between(load[phase]["started_at"], load[phase]["ended_at"])
    return round(load[phase][count] / cpu, 1) if cpu else None


class CpuShares:
    """CPU seconds each process of the stack, and the load generator, spent during one step: where an
    event's cost goes when everything shares the machine."""

    def __init__(self, settings: Settings) -> None:
        self.pids = stack_pids(settings)
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        times = {}
        for name, pid in self.pids.items():
            try:
                times[name] = cpu_seconds(pid)
            except OSError:
                continue
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        times["loadgen"] = children.ru_utime + children.ru_stime
        return times

    def us_per_event(self, events: int, seconds: float) -> dict:
        end = self._read()
        spent = {name: end[name] - self.start[name] for name in end if name in self.start}
        shares = {name: round(cpu / events * 1e6, 1) for name, cpu in sorted(spent.items(), key=lambda i: -i[1])}
        total = sum(spent.values())
        return {"us_per_event": shares, "total_us_per_event": round(total / events * 1e6, 1),
                "cores_busy": round(total / seconds, 2)}


class GroupProgress:
    """Committed and end offsets of consumer groups, read through one long-lived admin client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __aenter__(self) -> GroupProgress:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def position(self, group: str, topic: str) -> tuple[int, int]:
        """(committed, end) offsets of ``group`` on ``topic``, summed over partitions. On a topic
        written in transactions the end lies past each partition's last commit marker, which no
        consumer commits: up to one offset per partition is subtracted from the end."""
        described = await self.admin.describe_topics([topic])
        partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
        ends = await self.consumer.end_offsets(partitions)
        try:
            committed = await self.admin.list_consumer_group_offsets(group)
        except GroupCoordinatorNotAvailableError:  # a fresh broker: no group has committed yet
            committed = {}
        done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic and meta.offset > 0}
        markers = sum(1 for tp in partitions if 0 < ends[tp] - done.get(tp, 0) <= 1)
        return sum(done.values()), sum(ends.values()) - (markers if topic.endswith(".step.index") else 0)


def batch_lines(log_path: Path, offset: int) -> list[dict]:
    """The role's per-batch log lines written after ``offset``."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        lines = [orjson.loads(line) for line in log if line.startswith(b"{")]
    return [line for line in lines if line.get("event") == "batch"]


async def drain_role(stack: Stack, progress: GroupProgress, role: tuple[str, str, str], events: int) -> dict:
    """Start one role on a full input topic; once its group has caught up, read its own per-batch log
    lines: events per second from its first batch to its last, and per CPU-second over that window."""
    name, group, topic = role
    child = stack.child(name)
    offset = child.log_path.stat().st_size if child.log_path.exists() else 0
    stack.start_services([name])
    pid, cpu_at_first, last_change = child.proc.pid, None, (0, time.perf_counter())
    while True:
        done, end = await progress.position(group, topic)
        if cpu_at_first is None and batch_lines(child.log_path, offset):
            cpu_at_first = cpu_seconds(pid)
        if end and done >= end:
            break
        now = time.perf_counter()
        if done != last_change[0]:
            last_change = (done, now)
        elif now - last_change[1] > STALL_S:
            return {"events_per_s": None, "events_per_core_s": None, "stalled_at": f"{done}/{end}"}
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(pid) - (cpu_at_first or 0)
    lines = batch_lines(child.log_path, offset)
    counted = [line.get("events") or line.get("rows") or 0 for line in lines]
    first_ms = lines[0]["ms"] / 1000
    wall = (datetime.fromisoformat(lines[-1]["timestamp"]) - datetime.fromisoformat(lines[0]["timestamp"]))
    seconds = wall.total_seconds() + first_ms
    after_first = sum(counted[1:])
    return {"events": sum(counted) or events, "batches": len(lines), "seconds": round(seconds, 2),
            "events_per_s": round(sum(counted) / seconds, 1) if seconds > 0 and sum(counted) else None,
            "events_per_core_s": round(after_first / cpu, 1) if cpu > 0 and after_first else None}


def drain_in_flow_order(stack: Stack, events: int) -> dict:
    """Each role alone on the backlog the previous one left: its own events per second and per core."""
    settings = stack.settings
    stack.switch_layout(colocate_stateless_steps=False, start=False)  # each step alone
    roles = [("mediator", "headwater-mediator", raw_topic(settings))]
    roles += [(f"processor-{step}", processor_group(step), step_topic(settings, step)) for step in PROCESSOR_STEPS]
    roles += [("indexer", "headwater-indexer-events", step_topic(settings, INDEX_STEP))]

    async def drain() -> dict:
        async with GroupProgress(settings) as progress:
            return {role[0]: await drain_role(stack, progress, role, events) for role in roles}

    return asyncio.run(drain())


def collector_figures(load: dict, sampler: CpuSampler | None = None) -> dict:
    return {
        "single_requests_per_core_s": per_core(load, "single", sampler, "requests"),
        "batched_events_per_core_s": per_core(load, "batch", sampler, "events_acked"),
        "single_requests_per_s": load["single"]["requests_per_s"],
        "single_p99_ms_flat_out": load["single"]["p99_ms"],
        "batched_events_per_s": load["batch"]["events_per_s"],
        "batch_p99_ms_flat_out": load["batch"]["p99_ms"],
        "p99_ms_at_half_load": load["single_half_load"]["p99_ms"],
        "half_load_requests_per_s": load["single_half_load"]["requests_per_s"],
        "statuses": {p: load[p]["statuses"] for p in PHASES},
    }


def bench(settings: Settings, url: str, events: int, stack: Stack | None) -> dict:
    counter = Events(settings)
    first = f"bench{uuid.uuid4().hex[:10]}"
    collector_pid = json.loads((settings.local_path / "stack.json").read_text())["collector"]
    with CpuSampler(collector_pid) as sampler:
        collector_load = run_loadgen(settings, url, first, events)
    result = {"isolated": stack is not None, "collector": collector_figures(collector_load, sampler)}
    if stack is not None:
        result["per_role_drain"] = drain_in_flow_order(stack, len(collector_load["acked"]))
        stack.start_services()
        counter.wait_indexed(first, len(collector_load["acked"]))

    e2e_events = int(os.environ.get("BENCH_E2E_EVENTS", "600000"))
    colocated = settings.colocate_stateless_steps
    if stack is not None:
        stack.switch_layout(colocated)
    second, load, result["end_to_end"] = end_to_end(settings, url, counter, e2e_events, colocated)
    runs = [(first, collector_load), (second, load)]
    single = result["single_events_end_to_end"] = single_events_end_to_end(
        settings, url, counter, float(os.environ.get("BENCH_SINGLE_S", "20")))[2]
    result["steady"] = [steady_latency(settings, url, counter, rate) for rate in STEADY_RATES]
    result["steady_high"] = []
    for rate in HIGH_RATES:
        high_run, high_load, figures = steady_high(settings, url, counter, rate)
        result["steady_high"].append(figures)
        runs.append((high_run, high_load))
    rss = peak_rss_mb(settings)  # before the swap ends some of the processes
    if stack is not None:  # the same load in the other layout of the stateless steps
        stack.switch_layout(not colocated)
        third, other_load, result["end_to_end_other_layout"] = end_to_end(settings, url, counter, e2e_events,
                                                                          not colocated)
        runs.append((third, other_load))
    # wrk knows how many requests it got a 2xx for, not which: fewer distinct ids than 2xx is a loss
    lost, duplicates, acked = max(0, single["acked"] - single["found"]), single["duplicates"], single["acked"]
    for run, run_load in runs:
        rows, distinct = counter.counts(run)
        acked += len(run_load["acked"])
        lost += len(run_load["acked"]) - min(distinct, len(run_load["acked"]))
        duplicates += rows - distinct
    result.update({
        "events_per_s": result["end_to_end"]["events_per_s"],
        "collector_requests_per_s": result["collector"]["single_requests_per_s"],
        "ingest_to_queryable_ms": result["end_to_end"]["ingest_to_queryable_ms"],
        "events_acked": acked, "lost": lost, "duplicates": duplicates,
        "rss_mb": {**rss, **peak_rss_mb(settings)},
    })
    return result


def end_to_end(settings: Settings, url: str, counter: Events, events: int,
               colocated: bool) -> tuple[str, dict, dict]:
    """Step 3: ``events`` in batches of 100 posted while the whole pipeline runs, timed from the first
    POST until the last one is queryable, with where the CPU went."""
    run = f"bench{uuid.uuid4().hex[:10]}"
    shares = CpuShares(settings)
    started = time.perf_counter()
    load = run_loadgen(settings, url, run, events, batched_only=True)
    indexed_at, _, _ = counter.wait_indexed(run, len(load["acked"]))
    return run, load, {
        "layout": "validate+enrich+anonymize in one process" if colocated else "one process per step",
        "events_per_s": round(len(load["acked"]) / (indexed_at - started), 1),
        "ingest_to_queryable_ms": counter.latency(run),
        "cpu": shares.us_per_event(len(load["acked"]), indexed_at - started),
        "batched_events_per_s_at_collector": load["batch"]["events_per_s"],
    }


def single_events_end_to_end(settings: Settings, url: str, counter: Events, seconds: float) -> tuple[str, dict, dict]:
    """Step 3b: single-event requests (a browser's traffic) flat out for ``seconds`` from wrk's 64
    connections while the whole pipeline runs: requests per second and their latency at the client,
    events stored per second end to end, and where the CPU went (wrk's included, as the load generator)."""
    run = f"single{uuid.uuid4().hex[:10]}"
    shares, started = CpuShares(settings), time.perf_counter()
    load = wrk.single_events(url, settings.default_write_key, run, seconds)
    cpu_while_sending = shares.us_per_event(load["requests"], time.perf_counter() - started)
    indexed_at, rows, distinct = counter.wait_indexed(run, load["events_acked"])
    return run, load, {
        "requests_per_s": load["requests_per_s"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"],
        "statuses": load["statuses"], "socket_errors": load["socket_errors"],
        "stored_events_per_s": round(distinct / (indexed_at - started), 1),
        "acked": load["events_acked"], "found": distinct, "duplicates": rows - distinct,
        "ingest_to_queryable_ms": counter.latency(run), "cpu_while_sending": cpu_while_sending,
    }


def steady_latency(settings: Settings, url: str, counter: Events, rate: float) -> dict:
    """Ingest-to-queryable latency at a steady rate the pipeline keeps up with (not a backlog)."""
    run = f"steady{uuid.uuid4().hex[:10]}"
    sender = Sender(url, settings.default_write_key, run, rate)
    sender.start()
    time.sleep(STEADY_S)
    sender.stopping.set()
    sender.join()
    counter.wait_indexed(run, len(sender.acked))
    rows, distinct = counter.counts(run)
    return {"rate": rate, "seconds": STEADY_S, "acked": len(sender.acked), "found": distinct,
            "duplicates": rows - distinct, "ingest_to_queryable_ms": counter.latency(run)}


def steady_high(settings: Settings, url: str, counter: Events, rate: float) -> tuple[str, dict, dict]:
    """Ingest-to-queryable latency at ``rate`` events/s in batches of 100 from the load generator for
    ``STEADY_S``: rates up to near what the pipeline sustains."""
    run, since_ms = f"high{uuid.uuid4().hex[:10]}", int(time.time() * 1000)
    shares, started = CpuShares(settings), time.perf_counter()
    load = run_loadgen(settings, url, run, int(rate * STEADY_S), batched_only=True, rate=rate)
    cpu = shares.us_per_event(len(load["acked"]), time.perf_counter() - started)
    counter.wait_indexed(run, len(load["acked"]))
    rows, distinct = counter.counts(run)
    return run, load, {"rate": rate, "seconds": STEADY_S, "sent_per_s": load["batch"]["events_per_s"],
                       "acked": len(load["acked"]), "found": distinct, "duplicates": rows - distinct,
                       "ingest_to_queryable_ms": counter.latency(run),
                       "hops_ms": hop_latencies(settings, run, since_ms)["hops_ms"], "cpu_while_sending": cpu}


def tracker_sizes() -> dict:
    """The built tracking scripts, in bytes and in gzipped bytes (as `gzip -9 -n` counts them)."""
    dist = Path(__file__).resolve().parent.parent / "sdks" / "js" / "dist"
    return {path.name: {"bytes": path.stat().st_size, "gzip_bytes": len(gzip.compress(path.read_bytes(), 9))}
            for path in sorted(dist.glob("*.js"))}


def main() -> None:
    settings = get_settings()
    events = int(os.environ.get("BENCH_EVENTS", "200000"))
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    stack = None
    if not http_ok(url + "/readyz"):
        print("starting Kafka, ClickHouse and the collector ...", flush=True)
        # A fresh broker and ClickHouse every run: data left by earlier runs (tens of GB of topics,
        # millions of rows the counting queries scan) made later runs slower than earlier ones.
        settings = fresh_stack_settings(settings, BENCH_DIR)
        stack = Stack(settings)
        stack.start_servers()
        stack.start_services(["collector"])
    try:
        result = bench(settings, url, events, stack)
    finally:
        if stack:
            stack.stop()
    result["sessionize_state_mb_per_100k_visitors"] = state_mb_per_100k_visitors()
    result["tracker"] = tracker_sizes()
    result.update(date=datetime.now(UTC).isoformat(timespec="seconds"), cores=os.cpu_count(),
                  machine=platform.machine(), events_per_load=events,
                  events_per_end_to_end_load=int(os.environ.get("BENCH_E2E_EVENTS", "600000")))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
