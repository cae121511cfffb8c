"""``headwater export``: a bulk export of one project's table for a time range, written by ClickHouse in
its own Parquet or JSON-lines output format.

ClickHouse writes the file itself (``INSERT INTO FUNCTION file(…)``), into its ``user_files``
directory, so the rows never pass through Python and a large export costs the client nothing. To land
the file in object storage instead, run the printed SQL (``--sql``) with the ``s3(…)`` table function in
place of ``file(…)``.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from clickhouse_driver import Client

from analytics.queries import SINCE, UNTIL, Query, QueryError, time_range
from headwater.clickhouse import project_database

FORMATS = {"parquet": ("Parquet", "parquet"), "jsonl": ("JSONEachRow", "jsonl")}
TIME_COLUMN = {"events": "timestamp", "sessions": "start_at", "failed_events": "failed_at"}
READ = {"events": "events FINAL", "sessions": "sessions FINAL", "failed_events": "failed_events"}


@dataclasses.dataclass(frozen=True)
class ExportReport:
    path: str  # relative to the ClickHouse server's user_files directory
    format: str
    rows: int
    location: str  # where the file is on the ClickHouse server's machine


def default_path(project_id: str, table: str, since: datetime, until: datetime, fmt: str) -> str:
    stamp = f"{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}"
    return f"headwater/{project_id}/{table}-{stamp}.{FORMATS[fmt][1]}"


def export_query(project_id: str, table: str, since: datetime, until: datetime, fmt: str,
                 path: str | None = None) -> Query:
    if fmt not in FORMATS:
        raise QueryError(f"format must be one of {', '.join(FORMATS)}")
    if table not in TIME_COLUMN:
        raise QueryError(f"table must be one of {', '.join(TIME_COLUMN)}")
    bounds = time_range(since, until)
    path = path or default_path(project_id, table, since, until, fmt)
    if path.startswith("/") or ".." in path.split("/"):
        raise QueryError("the output path is relative to ClickHouse's user_files directory and stays inside it")
    column = TIME_COLUMN[table]
    sql = (f"INSERT INTO FUNCTION file(%(path)s, '{FORMATS[fmt][0]}')\n"
           f"SELECT * FROM {project_database(project_id)}.{READ[table]}\n"
           f"WHERE {column} >= {SINCE} AND {column} < {UNTIL}\n"
           f"ORDER BY {column}\n"
           "SETTINGS engine_file_truncate_on_insert = 1")
    return Query(sql, {"path": path, **bounds}, ())


def export(client: Client, query: Query, fmt: str) -> ExportReport:
    client.execute(query.sql, query.params)
    rows = client.last_query.progress.written_rows
    return ExportReport(query.params["path"], fmt, rows, location(client, query.params["path"], fmt))


def location(client: Client, path: str, fmt: str) -> str:
    """The file's full path as ClickHouse resolved it (``_path`` of the file it reads back)."""
    found = client.execute(f"SELECT _path FROM file(%(path)s, '{FORMATS[fmt][0]}') LIMIT 1", {"path": path})
    return found[0][0] if found else path
