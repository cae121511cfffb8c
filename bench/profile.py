"""`make profile`: where each role spends its time under the end-to-end load, sampled with py-spy.

Starts its own local stack (ports and data of ``.local/profile``, rate limits off), sends a warm-up
load, then ``PROFILE_EVENTS`` (default 400,000) events in batches of 100 and, three seconds in,
samples each role named in ``PROFILE_ROLES`` (default: the collector, the stateless processors'
process and the sessionizer) for ``PROFILE_S`` (12) seconds at 50 Hz. ``PROFILE_RATE`` (events/s)
sends at that steady rate instead of flat out; ``PROFILE_IDLE=1`` also counts the samples where a
role waits (for Kafka, ClickHouse or its next poll): where its wall-clock time goes. ``PROFILE_SINGLE=1``
sends single-event requests (a browser's traffic) instead of batches. Prints each role's functions by
share of its samples (where the time was spent, own time only) and leaves py-spy's raw stacks in
bench/results/profile-<role>.txt (flame-graph input).
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from bench.run import RESULTS, fresh_stack_settings, run_loadgen, stack_pids
from commands.roles import COLOCATED
from devstack.stack import Stack
from headwater.settings import get_settings

PY_SPY = Path(sys.executable).with_name("py-spy")


def top_functions(raw: Path, count: int = 15) -> list[tuple[float, str]]:
    """The functions with the largest share of a py-spy raw profile's samples, by own time."""
    own, total = collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        total += int(samples)
        own[stack.rpartition(";")[2]] += int(samples)
    return [(round(100 * n / total, 1), frame) for frame, n in own.most_common(count)] if total else []


def sample(pids: dict[str, int], roles: list[str], seconds: float, idle: bool) -> dict[str, Path]:
    outputs = {role: RESULTS / f"profile-{role}.txt" for role in roles}
    spies = [subprocess.Popen([str(PY_SPY), "record", "--pid", str(pids[role]), "--duration", str(int(seconds)),
                               "--rate", "50", "--format", "raw", "--nonblocking", "-o", str(outputs[role]),
                               *(["--idle"] if idle else [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for role in roles]
    for spy in spies:
        spy.wait()
    return outputs


def main() -> None:
    roles = os.environ.get("PROFILE_ROLES", f"collector,{COLOCATED},processor-sessionize").split(",")
    events = int(os.environ.get("PROFILE_EVENTS", "400000"))
    seconds = float(os.environ.get("PROFILE_S", "12"))
    rate, idle = float(os.environ.get("PROFILE_RATE", "0")), os.environ.get("PROFILE_IDLE") == "1"
    single = os.environ.get("PROFILE_SINGLE") == "1"
    settings = fresh_stack_settings(get_settings(), ".local/profile")
    RESULTS.mkdir(exist_ok=True)
    stack = Stack(settings)
    stack.start()
    try:
        run_loadgen(settings, stack.collector_url, f"warm{uuid.uuid4().hex[:6]}", 50_000, batched_only=True)
        pids, outputs = stack_pids(settings), {}

        def later() -> None:
            time.sleep(3)
            outputs.update(sample(pids, roles, seconds, idle))

        sampler = threading.Thread(target=later)
        sampler.start()
        run_loadgen(settings, stack.collector_url, f"profile{uuid.uuid4().hex[:6]}", events,
                    batched_only=not single, single_only=single, rate=rate)
        sampler.join()
    finally:
        stack.stop()
    for role, raw in outputs.items():
        print(f"\n{role} ({raw}):")
        for share, frame in top_functions(raw):
            print(f"  {share:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
