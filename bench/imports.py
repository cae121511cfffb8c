"""`headwater import`'s speed (part of `make bench`): ``python -m bench.imports``, into
bench/results/imports.json.

One million rows (an id, a text id, an organization, a time) imported:

- from a real PostgreSQL (Debian's, a cluster of the bench's own): the full load (described, staged,
  exchanged), beside ClickHouse's plain ``INSERT … SELECT FROM postgresql()`` into an empty table, the
  engine-only figure of the same run; then an incremental re-run that finds nothing new;
- from a Parquet file on this machine: the full load, beside reading the file alone with pyarrow (the
  floor of any load through this machine).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from bench.clickhouse import bench_clickhouse
from bench.run import RESULTS
from devstack.postgres import PostgresServer
from headwater.clickhouse import project_database
from headwater.settings import get_settings
from importer.load import TableLoader, table_function
from importer.plan import Source, TableImport

ROWS = 1_000_000
PROJECT = "bench_imports"


def timed(run) -> tuple[float, object]:
    started = time.perf_counter()
    result = run()
    return round(time.perf_counter() - started, 2), result


def parquet_file(path) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    ids = pa.array(range(1, ROWS + 1), pa.int64())
    pq.write_table(pa.table({"id": ids, "external_id": pa.array([f"user-{i}" for i in range(1, ROWS + 1)]),
                             "organization_id": pa.array([i % 1000 for i in range(1, ROWS + 1)], pa.int64()),
                             "updated_at": pa.array([start + timedelta(seconds=i) for i in range(ROWS)],
                                                    pa.timestamp("us", tz="UTC"))}), path)


def main() -> None:
    settings = get_settings()
    with bench_clickhouse(settings) as client:
        run(settings, client)


def run(settings, client) -> None:
    postgres = PostgresServer(settings.local_path / "bench-postgres", 19532)
    postgres.start()
    try:
        db = project_database(PROJECT)
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        client.execute(f"CREATE DATABASE {db}")
        postgres.psql("CREATE TABLE users (id int PRIMARY KEY, external_id text, organization_id int, "
                      "updated_at timestamptz); INSERT INTO users SELECT i, 'user-' || i, i % 1000, "
                      f"'2026-11-01'::timestamptz + i * interval '1 second' FROM generate_series(1, {ROWS}) AS i")
        source = Source(kind="postgresql", host="127.0.0.1", port=postgres.port, table="users", user=postgres.USER)
        loader = TableLoader(client, PROJECT)
        result: dict = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "rows": ROWS}
        seconds, loaded = timed(lambda: loader.load(TableImport("users", source, ["id"])))
        result["postgresql_full_s"] = seconds
        call, params = table_function(source)
        client.execute(f"CREATE TABLE {db}.engine_only (id Int32, external_id Nullable(String), "
                       "organization_id Nullable(Int32), updated_at Nullable(DateTime64(6))) ENGINE = MergeTree "
                       "ORDER BY id")
        result["postgresql_engine_only_s"] = timed(lambda: client.execute(
            f"INSERT INTO {db}.engine_only SELECT * FROM {call}", params))[0]
        incremental = TableImport("users_by_time", source, ["id"], cursor="updated_at")
        result["postgresql_incremental_first_s"] = timed(lambda: loader.load(incremental))[0]
        result["postgresql_incremental_nothing_new_s"] = timed(lambda: loader.load(incremental))[0]
        path = settings.local_path / "bench-imports.parquet"
        parquet_file(path)
        result["parquet_full_s"] = timed(lambda: loader.load(
            TableImport("users_file", Source(kind="parquet", path=str(path)), ["id"])))[0]
        result["parquet_read_alone_s"] = timed(lambda: sum(b.num_rows for b in pq.ParquetFile(path).iter_batches(
            batch_size=100_000)))[0]
        result["rows_in_tables"] = client.execute(
            f"SELECT (SELECT count() FROM {db}.imported_users FINAL), (SELECT count() FROM {db}.imported_users_file "
            "FINAL)")[0]
        assert loaded.rows_in_table == ROWS and list(result["rows_in_tables"]) == [ROWS, ROWS]
        print(json.dumps(result))
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "imports.json").write_text(json.dumps(result, indent=2) + "\n")
    finally:
        client.execute(f"DROP DATABASE IF EXISTS {project_database(PROJECT)} SYNC")
        postgres.stop()


if __name__ == "__main__":
    main()
