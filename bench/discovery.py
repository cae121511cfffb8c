"""Discovery's speed on the 10 M-event month (part of `make bench`): ``python -m bench.discovery``, into
bench/results/discovery.json.

The month of ``bench.queries`` (its generator: sessions of 3–16 page views that walk a four-step
shopping funnel on their last pages, fewer at each step). Timed, median of ``BENCH_DISCOVERY_RUNS``:

- ``funnels``: mining on the default sample and the exact recount of the candidates, as
  ``headwater discover funnels`` runs them (the two queries one after the other, and the Python
  between);
- ``target``: the Discover page with a target and a path: funnels ending at the target, its drivers
  and the paths from a step (mining, drivers and paths at once on the dashboard's four connections,
  then the recount);
- each query alone, run by clickhouse-driver and nothing else (the engine-only figures), and the
  statistics over the drivers' rows in Python alone.

It also reports what was found, so a run shows that the generator's funnel comes out first.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from datetime import timedelta

from analytics import discovery, lift
from analytics.run import records
from bench.clickhouse import bench_clickhouse
from bench.queries import DAYS, FUNNEL, RESULTS, START, load
from dashboard.runner import QueryRunner
from headwater.clickhouse import project_database
from headwater.settings import get_settings

PROJECT = "bench_discovery"
UNTIL = START + timedelta(days=DAYS)
TARGET, PATH_STEP = FUNNEL[-1], "/pricing"


def median_ms(run, runs: int) -> tuple[float, float, object]:
    run()  # warm: the first run reads from disk
    seconds, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return round(statistics.median(seconds) * 1000, 1), round(max(seconds) * 1000, 1), result


def main() -> None:
    settings = get_settings()
    events = int(os.environ.get("BENCH_QUERY_EVENTS", 10_000_000))
    runs = int(os.environ.get("BENCH_DISCOVERY_RUNS", 3))
    with bench_clickhouse(settings) as client:
        run(settings, client, events, runs)


def run(settings, client, events: int, runs: int) -> None:
    runner = QueryRunner(settings)
    try:
        result: dict = {"load": load(client, PROJECT, events)}
        print(json.dumps(result["load"]), flush=True)

        async def sequential(queries):
            return {name: records(client, query) for name, query in queries.items()}

        def funnels():
            return asyncio.run(discovery.discover(sequential, PROJECT, START, UNTIL))

        def page():
            return asyncio.run(discovery.discover(runner.records, PROJECT, START, UNTIL, target=TARGET,
                                                  path_step=PATH_STEP))

        result["funnels_median_ms"], result["funnels_max_ms"], found = median_ms(funnels, runs)
        result["target_page_median_ms"], result["target_page_max_ms"], targeted = median_ms(page, runs)
        engine = {**found.queries, **{f"target_{name}": query for name, query in targeted.queries.items()}}
        result["engine_only_median_ms"] = {
            name: median_ms(lambda q=query: client.execute(q.sql, q.params), runs)[0] for name, query in engine.items()}
        driver_rows = records(client, targeted.queries["drivers"])
        result["drivers_statistics_median_ms"] = median_ms(lambda: lift.drivers(driver_rows), runs)[0]
        result["found"] = {
            "sampled_sessions": found.sampled,
            "funnels": [f.as_dict() for f in found.funnels[:5]],
            "first_four_step_funnel": next((list(f.steps) for f in found.funnels if len(f.steps) == 4), None),
            "target_funnels": [f.as_dict() for f in targeted.funnels[:3]],
            "drivers_tested": targeted.drivers.tested if targeted.drivers else 0,
            "drivers_significant": [d.as_dict() for d in (targeted.drivers.drivers if targeted.drivers else [])
                                    if d.significant][:5],
            "path_nodes": len(targeted.paths["nodes"]) if targeted.paths else 0,
        }
        client.execute(f"DROP DATABASE {project_database(PROJECT)} SYNC")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "discovery.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        runner.close()


if __name__ == "__main__":
    main()
