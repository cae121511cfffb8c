"""Alternate one role's environment between two values on one stack, at one steady rate.

``python -m bench.alternate ROLES VARIABLE A B RATE RUNS`` starts a fresh stack (under
``.local/alternate``), warms it up (200,000 events, then one untimed steady run for the broker's
JIT), then for each of ``RUNS`` rounds restarts each of ``ROLES`` (comma-separated) with ``VARIABLE=A`` and with ``VARIABLE=B``
(ABBA order, so a drifting machine does not favour one side) and sends ``RATE`` events/s for
``BENCH_STEADY_S`` seconds each time. Prints one line per run: the value, ingest-to-queryable p50 and
p99, each hop's p50/p99, each process's CPU µs an event, and the events acknowledged and found.

Why: on this 2-core machine the speed of the moment swings more than most changes move a figure, so
comparing two separate `make bench` runs says little. Alternating on one stack does (docs/performance.md).
Example: ``python -m bench.alternate collector HEADWATER_PRODUCER_LINGER_MS 5 0 20000 2``.
With ``ROLES`` ``flow`` it alternates the default project's flow instead, between two of :data:`FLOWS`
(``python -m bench.alternate flow - default ten_rules 20000 2``: what conditional routing costs end to end;
``default transforms``: what a declarative and a Python transform step cost).
With ``RATE`` 0 each run sends single-event requests flat out from wrk for ``BENCH_SINGLE_S`` seconds instead
(bench.run's step 3b) and prints requests/s, p99, events stored per second and the CPU per event.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

import httpx

from bench.hotpath import DECLARATIVE, PYTHON, TEN_RULES
from bench.run import Events, fresh_stack_settings, single_events_end_to_end, steady_high, warm_up
from devstack.stack import Stack
from headwater.settings import get_settings

# "transforms": the default flow with bench.hotpath's declarative and Python transform steps, for every event
FLOWS = {"default": None, "ten_rules": TEN_RULES,
         "transforms": ["validate", "enrich", "anonymize", DECLARATIVE, PYTHON, "sessionize", "index"]}
TRANSFORMS_DIR = Path(__file__).resolve().parent / "transforms"


def summary(value: str, result: dict) -> str:
    cpu = result["cpu_while_sending"]
    hops = " ".join(f"{name.split(' -> ')[0]}:{q['p50']}/{q['p99']}" for name, q in result["hops_ms"].items())
    shares = {name: us for name, us in cpu["us_per_event"].items() if us >= 2}
    return (f"{value}: {result['ingest_to_queryable_ms']} {hops} {shares} sum {cpu['total_us_per_event']} "
            f"busy {cpu['cores_busy']} found {result['found']}/{result['acked']} dup {result['duplicates']}")


def single_summary(value: str, result: dict) -> str:
    cpu = result["cpu_while_sending"]
    shares = {name: us for name, us in cpu["us_per_event"].items() if us >= 2}
    return (f"{value}: {result['requests_per_s']} req/s p99 {result['p99_ms']} ms stored "
            f"{result['stored_events_per_s']}/s ingest->queryable {result['ingest_to_queryable_ms']} {shares} sum {cpu['total_us_per_event']} busy {cpu['cores_busy']}")


def one_run(settings, url: str, counter: Events, rate: float, value: str) -> str:
    if rate:
        return summary(value, steady_high(settings, url, counter, rate)[2])
    seconds = float(os.environ.get("BENCH_SINGLE_S", "20"))
    return single_summary(value, single_events_end_to_end(settings, url, counter, seconds)[2])


def set_flow(stack: Stack, flow: list | None) -> None:
    reply = httpx.patch(f"{stack.admin_url}/v1/projects/default/config", json={"flow": flow},
                        headers={"Authorization": f"Bearer {stack.settings.admin_token}"}, timeout=30)
    reply.raise_for_status()


def main(roles: str, variable: str, a: str, b: str, rate: float, runs: int) -> None:
    settings = dataclasses.replace(fresh_stack_settings(get_settings(), ".local/alternate"),
                                   transforms_dir=str(TRANSFORMS_DIR))
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    with Stack(settings) as stack:
        counter = Events(settings)
        warm_up(settings, url, counter)
        steady_high(settings, url, counter, rate or 10_000)
        for round_ in range(runs):
            for value in (a, b) if round_ % 2 == 0 else (b, a):
                if roles == "flow":
                    set_flow(stack, FLOWS[value])
                for name in roles.split(",") if roles != "flow" else ():
                    stack.child(name).env[variable] = value
                    stack.restart(name)
                time.sleep(3)
                print(one_run(settings, url, counter, rate, value), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
