"""What keeping the event catalogue costs ClickHouse per event (part of `make bench`).

The catalogue is a materialized view on ``events`` (migration 0009), so every INSERT of the indexer
also aggregates its rows into ``event_catalogue``. This starts a ClickHouse of its own
(``.local/bench-catalogue``), makes two project databases by the migrations, drops the view from one,
and sends both the indexer's own INSERT (:func:`indexer.events_sql.insert_sql`) with the same records
(``BENCH_CATALOGUE_INSERTS`` INSERTs of 2,000 events in records of 100, as the indexer batches them
under load), alternating between them. The ClickHouse server's CPU (from /proc) around each INSERT,
per event: with the view against without it, in the same run. Figures go to bench/results/catalogue.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from datetime import UTC, datetime

from bench.indexer import PER_RECORD, envelope
from bench.run import RESULTS, cpu_seconds
from devstack.stack import Stack
from headwater.clickhouse import make_client, project_database
from headwater.envelope import encode_batch
from headwater.migrations import migrate_project
from headwater.settings import get_settings
from indexer.events_sql import insert_sql

EVENTS_PER_INSERT = 2_000
BENCH_SETTINGS = {"local_dir": ".local/bench-catalogue", "kafka_bootstrap": "127.0.0.1:39092",
                  "kafka_controller_port": 39093, "clickhouse_port": 39000, "clickhouse_http_port": 38123,
                  "local_metrics_port": 39400}


def records(project: str, insert: int) -> list[tuple]:
    """One INSERT's data: records of 100 envelopes, as the index topic holds them."""
    first = insert * EVENTS_PER_INSERT
    return [(encode_batch([envelope(project, n) for n in range(start, start + PER_RECORD)]).decode(), "", 0,
             start // PER_RECORD) for start in range(first, first + EVENTS_PER_INSERT, PER_RECORD)]


def main() -> None:
    inserts = int(os.environ.get("BENCH_CATALOGUE_INSERTS", 40))
    settings = dataclasses.replace(get_settings(), **BENCH_SETTINGS)
    shutil.rmtree(settings.local_path, ignore_errors=True)
    stack = Stack(settings)
    stack.start_servers()
    try:
        client = make_client(settings)
        for project in ("with_view", "without_view"):
            migrate_project(client, project)
        client.execute(f"DROP VIEW {project_database('without_view')}.event_catalogue_mv")
        server = stack.clickhouse.proc.pid
        cpu = {"with_view": 0.0, "without_view": 0.0}
        for i in range(inserts):
            for project in ("with_view", "without_view") if i % 2 == 0 else ("without_view", "with_view"):
                data = records(project, i)
                before = cpu_seconds(server)
                client.execute(insert_sql(project_database(project), project), data,
                               settings={"optimize_on_insert": 0})
                cpu[project] += cpu_seconds(server) - before
        kept = client.execute(f"SELECT count() FROM {project_database('with_view')}.event_catalogue")[0][0]
        client.disconnect()
    finally:
        stack.stop()
    events = inserts * EVENTS_PER_INSERT
    with_view, without = (cpu[p] / events * 1e6 for p in ("with_view", "without_view"))
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "events_per_project": events,
              "events_per_insert": EVENTS_PER_INSERT, "catalogue_rows": kept,
              "clickhouse_us_per_event_with_catalogue": round(with_view, 2),
              "clickhouse_us_per_event_without_catalogue": round(without, 2),
              "catalogue_us_per_event": round(with_view - without, 2),
              "insert_ms_with_catalogue": round(cpu["with_view"] / inserts * 1000, 1),
              "insert_ms_without_catalogue": round(cpu["without_view"] / inserts * 1000, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catalogue.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
