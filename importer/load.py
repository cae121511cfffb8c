"""Loading one table of a plan (:mod:`importer.plan`) into ``hw_<project>.imported_<name>``.

**Databases** (PostgreSQL, MySQL) are read by ClickHouse itself, through its ``postgresql()`` and
``mysql()`` table functions: ``INSERT … SELECT`` on the ClickHouse server, no row passes through
Python. The password goes in as a query parameter, and ClickHouse hides table functions' credentials
in its logs. **Files** (CSV, Parquet) are on this machine, where the ClickHouse server cannot read
them: pyarrow streams them in record batches, inserted column by column.

**Full** (no cursor): the rows go into a staging table, which then takes the table's place
(``EXCHANGE TABLES``, atomic): readers see the old rows or the new ones, a re-run gives the same
table, and rows deleted at the source go. **Incremental** (a cursor): only the rows whose cursor is
at least the largest loaded so far, into a ReplacingMergeTree on the key, versioned by
``_imported_at``: a row loaded again (the boundary's, a re-run's) is one row after merges, and at
once with ``FINAL``. A run that fails leaves the table as it was (full), or with some of the new
rows, which the next run loads again (incremental).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from clickhouse_driver import Client

from headwater.clickhouse import project_database
from importer.plan import DATABASES, Source, TableImport

BATCH_ROWS = 100_000
Progress = Callable[[int, int], None]  # rows and bytes more


class SourceError(ValueError):
    """A table that cannot be imported as planned; the message says why."""


@dataclasses.dataclass
class Loaded:
    table: str
    mode: str
    rows_loaded: int
    rows_in_table: int
    seconds: float


def quoted(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def table_function(source: Source) -> tuple[str, dict]:
    """The ClickHouse table function reading a database source, and its parameters."""
    password = os.environ.get(source.password_env, "") if source.password_env else ""
    if source.password_env and source.password_env not in os.environ:
        raise SourceError(f"the environment has no {source.password_env} (the source's password_env)")
    port = source.port or (5432 if source.kind == "postgresql" else 3306)
    params = {"address": f"{source.host}:{port}", "database": source.database, "source_table": source.table,
              "user": source.user, "password": password, "schema": source.schema or "public"}
    if source.kind == "postgresql":
        call = "postgresql(%(address)s, %(database)s, %(source_table)s, %(user)s, %(password)s, %(schema)s)"
    else:
        call = "mysql(%(address)s, %(database)s, %(source_table)s, %(user)s, %(password)s)"
    return call, params


ARROW_TYPES = [(pa.types.is_boolean, "Bool"), (pa.types.is_int8, "Int8"), (pa.types.is_int16, "Int16"),
               (pa.types.is_int32, "Int32"), (pa.types.is_int64, "Int64"), (pa.types.is_uint8, "UInt8"),
               (pa.types.is_uint16, "UInt16"), (pa.types.is_uint32, "UInt32"), (pa.types.is_uint64, "UInt64"),
               (pa.types.is_floating, "Float64"), (pa.types.is_timestamp, "DateTime64(6, 'UTC')"),
               (pa.types.is_date, "Date32"), (pa.types.is_decimal, "Float64")]


def clickhouse_type(arrow: pa.DataType) -> str:
    """The column type a file's column becomes (anything else: text), nullable as files are."""
    kind = next((name for test, name in ARROW_TYPES if test(arrow)), "String")
    return f"Nullable({kind})"


def column_values(column: pa.Array) -> list:
    """A column as the Python values clickhouse-driver writes: timestamps as microseconds since 1970
    (its raw form for DateTime64(6), without a datetime object each: a twentieth of the time),
    decimals as floats."""
    if pa.types.is_timestamp(column.type):
        return column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64()).to_pylist()
    if pa.types.is_decimal(column.type):
        return column.cast(pa.float64()).to_pylist()
    return column.to_pylist()


def file_batches(source: Source) -> tuple[pa.Schema, Iterator[pa.RecordBatch], int]:
    """The file's schema, its record batches, and its size in bytes (what the progress counts up to)."""
    if not os.path.isfile(source.path):
        raise SourceError(f"no file {source.path!r}")
    size = os.path.getsize(source.path)
    try:
        if source.kind == "parquet":
            parquet = pq.ParquetFile(source.path)
            return parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS), size
        reader = pacsv.open_csv(source.path, read_options=pacsv.ReadOptions(block_size=8 << 20))
        return reader.schema, iter(reader), size
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{source.path}: not a {source.kind} file ({exc})") from exc


def at_least(column: pa.Array, since: object) -> pa.Array:
    """Which of the column's values are at least ``since`` (a timestamp compared in UTC, whichever of
    them carries a zone)."""
    value = pa.scalar(since)
    if pa.types.is_timestamp(column.type) and pa.types.is_timestamp(value.type):
        utc = pa.timestamp("us", tz="UTC")
        return pc.greater_equal(column.cast(utc), value.cast(utc))
    return pc.greater_equal(column, value.cast(column.type))


class TableLoader:
    """Loads tables of one project with one ClickHouse client."""

    def __init__(self, client: Client, project_id: str, progress: Progress = lambda rows, size: None) -> None:
        self.client = client
        self.db = project_database(project_id)
        self.progress = progress

    def load(self, spec: TableImport) -> Loaded:
        started = time.perf_counter()
        mode = "incremental" if spec.cursor else "full"
        if spec.source.kind in DATABASES:
            rows = self._load_database(spec)
        else:
            rows = self._load_file(spec)
        count = self.client.execute(f"SELECT count() FROM {self.db}.{spec.table} FINAL")[0][0]
        return Loaded(spec.table, mode, rows, count, round(time.perf_counter() - started, 2))

    # the table

    def _columns(self, spec: TableImport, columns: list[tuple[str, str]]) -> list[tuple[str, str]]:
        names = [name for name, _ in columns]
        wanted = [*spec.key, *([spec.cursor] if spec.cursor else []), *([spec.user_id] if spec.user_id else [])]
        missing = [name for name in wanted if name not in names]
        if missing:
            raise SourceError(f"{spec.name}: the source has no column {', '.join(map(repr, missing))} "
                               f"(it has: {', '.join(names)})")
        return columns

    def _create(self, table: str, spec: TableImport, columns: list[tuple[str, str]]) -> None:
        body = ", ".join(f"{quoted(name)} {kind}" for name, kind in columns)
        self.client.execute(
            f"CREATE TABLE IF NOT EXISTS {self.db}.{table} ({body}, _imported_at DateTime64(3) DEFAULT now64(3)) "
            f"ENGINE = ReplacingMergeTree(_imported_at) ORDER BY ({', '.join(map(quoted, spec.key))}) "
            "SETTINGS allow_nullable_key = 1 COMMENT %(comment)s",
            {"comment": f"headwater import {spec.name} from {spec.source.kind}; user id column: {spec.user_id or '-'}"})

    def _exists(self, table: str) -> bool:
        return bool(self.client.execute(f"EXISTS TABLE {self.db}.{table}")[0][0])

    def _since(self, spec: TableImport) -> object | None:
        """The largest cursor loaded so far (``None``: load everything)."""
        if not spec.cursor or not self._exists(spec.table):
            return None
        query = f"SELECT count(), max({quoted(spec.cursor)}) FROM {self.db}.{spec.table}"
        rows, largest = self.client.execute(query)[0]
        return largest if rows else None

    def _target(self, spec: TableImport, columns: list[tuple[str, str]]) -> str:
        """The table this run writes into: a fresh staging table (full), or the table itself."""
        if spec.cursor:
            self._create(spec.table, spec, columns)
            return spec.table
        staging = f"{spec.table}__staging"
        self.client.execute(f"DROP TABLE IF EXISTS {self.db}.{staging}")
        self._create(staging, spec, columns)
        return staging

    def _finish(self, spec: TableImport, target: str) -> None:
        if target == spec.table:
            return
        if self._exists(spec.table):
            self.client.execute(f"EXCHANGE TABLES {self.db}.{target} AND {self.db}.{spec.table}")
            self.client.execute(f"DROP TABLE {self.db}.{target}")
        else:
            self.client.execute(f"RENAME TABLE {self.db}.{target} TO {self.db}.{spec.table}")

    # databases: ClickHouse reads them

    def _load_database(self, spec: TableImport) -> int:
        call, params = table_function(spec.source)
        try:
            described = self.client.execute(f"DESCRIBE TABLE {call}", params)
        except Exception as exc:  # the source cannot be reached or read: its own words
            raise SourceError(f"{spec.name}: cannot read the {spec.source.kind} table: {str(exc)[:500]}") from exc
        columns = self._columns(spec, [(row[0], row[1]) for row in described])
        target = self._target(spec, columns)
        since = self._since(spec)
        where = f" WHERE {quoted(spec.cursor)} >= %(since)s" if since is not None else ""
        names = ", ".join(quoted(name) for name, _ in columns)
        query = f"INSERT INTO {self.db}.{target} ({names}) SELECT {names} FROM {call}{where}"
        before = self._rows(target)
        progress = self.client.execute_with_progress(query, {**params, "since": since})
        seen = [0, 0]
        for rows, _total in progress:
            self.progress(rows - seen[0], 0)
            seen[0] = rows
        progress.get_result()
        loaded = self._rows(target) - before
        self._finish(spec, target)
        return loaded

    def _rows(self, table: str) -> int:
        return self.client.execute(f"SELECT count() FROM {self.db}.{table}")[0][0]

    # files: streamed through this machine

    def _load_file(self, spec: TableImport) -> int:
        schema, batches, size = file_batches(spec.source)
        columns = self._columns(spec, [(field.name, clickhouse_type(field.type)) for field in schema])
        target = self._target(spec, columns)
        since = self._since(spec)
        names = ", ".join(quoted(name) for name, _ in columns)
        loaded = 0
        try:
            for batch in batches:
                self.progress(0, int(batch.nbytes))
                if since is not None:
                    batch = batch.filter(at_least(batch.column(spec.cursor), since))
                if batch.num_rows:
                    self.client.execute(f"INSERT INTO {self.db}.{target} ({names}) VALUES",
                                        [column_values(column) for column in batch.columns], columnar=True)
                    loaded += batch.num_rows
                    self.progress(batch.num_rows, 0)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise SourceError(f"{spec.source.path}: {exc}") from exc
        self._finish(spec, target)
        return loaded
