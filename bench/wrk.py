"""Single-event requests from wrk (Debian's package, installed by ``make install``): a neutral load
generator in C whose own CPU stays small, with ``bench/single_event.lua`` building each request.

wrk counts answers, not which event each one acknowledged, so a run reports how many requests got a
2xx; the harness then waits until at least that many of the run's distinct messageIds are queryable.
The exact acknowledged-set accounting (0 lost, 0 duplicated) is the Python load generator's and
``make chaos``'s.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import orjson

from bench.events import VISITORS, event

LUA = Path(__file__).with_name("single_event.lua")
MARK = "@@messageId@@"


def write_bodies(path: Path) -> None:
    """One body a visitor, split around its messageId: ``<before>\\t<after>`` a line."""
    with path.open("w") as out:
        for visitor in range(VISITORS):
            body = orjson.dumps({**event("", visitor), "messageId": MARK}).decode()
            before, after = body.split(MARK)
            out.write(f"{before}\t{after}\n")


def single_events(url: str, key: str, run: str, seconds: float, connections: int = 64) -> dict:
    """POST single events to ``url``/v1/track flat out for ``seconds`` from ``connections`` keep-alive
    connections on one wrk thread; requests/s, latency at the client, and how many got a 2xx."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: `make install` installs it (Debian's package wrk)")
    with tempfile.TemporaryDirectory() as folder:
        bodies, out = Path(folder) / "bodies.tsv", Path(folder) / "out.json"
        write_bodies(bodies)
        env = {**os.environ, "WRK_BODIES": str(bodies), "WRK_OUT": str(out), "WRK_RUN": run,
               "WRK_KEY": base64.b64encode(f"{key}:".encode()).decode()}
        started_at = time.time()
        done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
                               "-s", str(LUA), f"{url}/v1/track"], env=env, capture_output=True)
        if done.returncode != 0 or not out.is_file():
            raise RuntimeError(f"wrk failed ({done.returncode}):\n{(done.stdout + done.stderr).decode()[-2000:]}")
        figures = json.loads(out.read_bytes())
    elapsed = figures["duration_us"] / 1e6
    ok = figures["requests"] - figures["non_2xx"]
    return {
        "requests": figures["requests"], "seconds": round(elapsed, 3),
        "requests_per_s": round(figures["requests"] / elapsed, 1), "events_acked": ok,
        "statuses": {"2xx": ok, "other": figures["non_2xx"]},
        "socket_errors": {k: figures[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")},
        "p50_ms": round(figures["p50_us"] / 1000, 2), "p99_ms": round(figures["p99_us"] / 1000, 2),
        "started_at": started_at, "ended_at": time.time(), "generator": "wrk",
    }
