"""The alerts' cost and latency: ``python -m bench.alerts`` (part of ``make bench``), into
bench/results/alerts.json.

A fresh stack runs the whole pipeline. The load generator sends realistic events (bench/events.py,
``Product Viewed`` tracks of 5,000 visitors) in batches of 100 at each steady rate of
``BENCH_ALERTS_RATES`` (5,000 and 10,000 events/s) for ``BENCH_ALERTS_S`` (30) seconds, twice:

1. **without rules**: the alerts role runs, and skips every record on its project header;
2. **with 150 rules**, 50 of each kind, all on the events the load sends (the worst case for the rule
   index): event rules whose condition is tested on every event, visitor rules that keep each
   visitor's last event, threshold rules counting every event in 10-minute windows (half of them
   hopping every 2 minutes, all on one condition), and one event rule on a probe. Meanwhile a probe event (``Latency
   Probe``) is posted alone every 100 ms; its alert goes to a webhook channel whose receiver (in this
   process) notes when it arrived.

Reported: the alert latency, from the probe's POST to the webhook receiving its alert, p50 / p99 / max
(the target: p99 under 2 s); and the CPU each process spent per event in both runs, so the alerts
role's added cost per event stands beside the sessionizer's (the other stateful step) and the whole
stack's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson

from bench.run import CpuShares, Events, fresh_stack_settings, run_loadgen, warm_up
from devstack.stack import Stack
from headwater.projects.admin import ProjectAdmin
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings, get_settings

BENCH_DIR = ".local/bench-alerts"
RESULTS = Path(__file__).resolve().parent / "results"
RECEIVER_PORT = 19983
PROBE = "Latency Probe"
PROBE_EVERY_S = 0.1


def rules(per_kind: int = 50) -> dict:
    out = [{"name": "probe", "kind": "event", "when": {"event": PROBE}}]
    for i in range(per_kind):
        if i:  # the probe's rule is the fiftieth event rule
            out.append({"name": f"event-{i}", "kind": "event", "when": {"all": [
                {"event": "Product Viewed"}, {"field": "properties.price", "gt": 1_000_000 + i}]}})
        out.append({"name": f"visitor-{i}", "kind": "visitor", "after_days": 7, "when": {"any": [
            {"field": "traits.plan", "equals": f"enterprise-{i}"}, {"field": "context.page.path", "equals": f"/vip/{i}"}]}})
        hop = {"every_s": 120} if i % 2 else {}
        out.append({"name": f"threshold-{i}", "kind": "threshold", "when": {"event": "Product Viewed"},
                    "window_s": 600, **hop, "change": {"against": "week", "drop_pct": 50}})
    return {"rules": out}


class Arrivals:
    """A webhook receiver noting when each probe's alert arrived (wall clock, ms)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.lock = threading.Lock()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                now = time.time() * 1000
                body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with arrivals.lock:
                    for alert in body.get("events", []):
                        cause = (alert.get("properties") or {}).get("message_id")
                        if cause:
                            arrivals.at.setdefault(cause, now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def probe(url: str, key: str, stopping: threading.Event, sent: dict[str, float]) -> None:
    """Post a probe event alone every PROBE_EVERY_S until ``stopping``; note when each was posted."""
    with httpx.Client(timeout=10) as client:
        while not stopping.wait(PROBE_EVERY_S):
            message_id = f"probe-{uuid.uuid4()}"
            at = time.time() * 1000
            reply = client.post(f"{url}/v1/track", auth=(key, ""), json={
                "event": PROBE, "anonymousId": "prober", "messageId": message_id,
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")})
            if reply.status_code == 200:
                sent[message_id] = at


async def configure(settings: Settings, changes: dict) -> None:
    store, writer = ProjectStore(settings), ProjectWriter(settings)
    await writer.start()
    await store.start()
    try:
        await ProjectAdmin(settings, store, writer).configure(settings.default_project, changes)
    finally:
        await store.stop()
        await writer.stop()


def steady(settings: Settings, url: str, rate: float, seconds: float, probes: dict | None) -> dict:
    """The load at ``rate`` for ``seconds`` (and the probes, given where to note them); CPU per event."""
    stopping = threading.Event()
    prober = threading.Thread(target=probe, args=(url, settings.default_write_key, stopping, probes))
    shares, started = CpuShares(settings), time.perf_counter()
    if probes is not None:
        prober.start()
    load = run_loadgen(settings, url, f"alerts{uuid.uuid4().hex[:8]}", int(rate * seconds), batched_only=True,
                       rate=rate)
    stopping.set()
    if probes is not None:
        prober.join()
    cpu = shares.us_per_event(len(load["acked"]), time.perf_counter() - started)
    return {"rate": rate, "sent_per_s": load["batch"]["events_per_s"], "acked": len(load["acked"]), "cpu": cpu}


def latency(sent: dict[str, float], arrivals: Arrivals, wait_s: float = 30.0) -> dict:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(arrivals.at.keys() & sent.keys()) < len(sent):
        time.sleep(0.2)
    ms = sorted(arrivals.at[m] - sent[m] for m in sent if m in arrivals.at)
    if not ms:
        return {"probes": len(sent), "alerted": 0}
    return {"probes": len(sent), "alerted": len(ms), "p50_ms": round(statistics.median(ms)),
            "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))]), "max_ms": round(ms[-1])}


def main() -> None:
    # the probe's rule raises ten alerts a second, past the default cap of 60 a minute
    settings = dataclasses.replace(fresh_stack_settings(get_settings(), BENCH_DIR), forward_private_networks=True,
                                   alerts_max_per_rule_per_minute=100_000)
    rates = [float(r) for r in os.environ.get("BENCH_ALERTS_RATES", "5000,10000").split(",")]
    seconds = float(os.environ.get("BENCH_ALERTS_S", "30"))
    arrivals = Arrivals()
    stack = Stack(settings)
    result: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count()}
    try:
        stack.start_servers()  # topics, migrations and the default project too
        stack.start_services()
        url = stack.collector_url
        warm_up(settings, url, Events(settings), 100_000)
        for rate in rates:
            result[f"without_rules_{rate:.0f}"] = steady(settings, url, rate, seconds, None)
        channel = {"name": "hook", "type": "webhook", "source": "alerts", "batch": {"max_events": 100, "max_ms": 50},
                   "settings": {"url": f"http://127.0.0.1:{RECEIVER_PORT}/hook"}}
        asyncio.run(configure(settings, {"alerts": rules(), "destinations": [channel]}))
        time.sleep(3)  # the forwarder starts the channel, the alerts role reads the rules
        for rate in rates:
            sent: dict[str, float] = {}
            run = result[f"with_150_rules_{rate:.0f}"] = steady(settings, url, rate, seconds, sent)
            run["alert_latency"] = latency(sent, arrivals)
            shares = run["cpu"]["us_per_event"]
            run["alerts_role_us_per_event"] = shares.get("alerts")
            run["sessionize_us_per_event_beside_it"] = shares.get("processor-sessionize")
            run["alerts_role_us_per_event_without_rules"] = result[f"without_rules_{rate:.0f}"]["cpu"][
                "us_per_event"].get("alerts")
    finally:
        stack.stop()
        arrivals.server.shutdown()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alerts.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
