"""Import plans and file batches without servers: what a plan may say, the types files' columns take,
and the cursor's comparison across time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from importer.load import SourceError, at_least, clickhouse_type, file_batches, quoted, table_function
from importer.plan import PlanError, Source, parse_plan


def problems(raw: bytes) -> list[str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(raw)
    return caught.value.problems


def test_a_plan_is_checked_with_every_problem_named():
    assert "Expected `str` matching regex" in problems(b'{"project": "shop", "tables": [{"name": "Users!", '
                                                       b'"key": ["id"], "source": {"kind": "csv", "path": "x"}}]}')[0]
    assert problems(b'{"project": "shop", "tables": [{"name": "a", "key": ["id"], "source": {"kind": "mysql"}},'
                    b'{"name": "a", "key": ["id"], "source": {"kind": "parquet", "user": "u"}}]}') == [
        "tables (a).source.host: a mysql source needs it", "tables (a).source.table: a mysql source needs it",
        "tables (a).source.user: a mysql source needs it", "tables (a).source.path: a parquet source needs the "
        "file's path", "tables (a).source.user: a parquet source is a file", "tables: 'a' is imported twice"]
    assert "Object contains unknown field `password`" in problems(
        b'{"project": "shop", "tables": [{"name": "a", "key": ["id"], "source": {"kind": "postgresql", '
        b'"password": "hunter2"}}]}')[0]
    plan = parse_plan(b'{"project": "shop", "tables": [{"name": "users", "key": ["id"], "cursor": "updated_at", '
                      b'"source": {"kind": "postgresql", "host": "db", "table": "users", "user": "r"}}]}')
    assert plan.tables[0].table == "imported_users"


def test_a_password_comes_from_the_environment_and_goes_in_as_a_parameter(monkeypatch):
    source = Source(kind="postgresql", host="db", table="users", user="r", password_env="APP_DB_PASSWORD")
    with pytest.raises(SourceError, match="the environment has no APP_DB_PASSWORD"):
        table_function(source)
    monkeypatch.setenv("APP_DB_PASSWORD", "it's s3cret")
    call, params = table_function(source)
    assert "s3cret" not in call and params["password"] == "it's s3cret" and params["address"] == "db:5432"
    assert table_function(Source(kind="mysql", host="db", table="t", user="r"))[1]["address"] == "db:3306"


def test_file_columns_take_nullable_clickhouse_types_and_names_are_quoted():
    assert clickhouse_type(pa.int64()) == "Nullable(Int64)"
    assert clickhouse_type(pa.timestamp("us", tz="UTC")) == "Nullable(DateTime64(6, 'UTC'))"
    assert clickhouse_type(pa.string()) == "Nullable(String)"
    assert clickhouse_type(pa.list_(pa.int8())) == "Nullable(String)"
    assert quoted("we`ird\\name") == "`we\\`ird\\\\name`"


def test_a_cursor_compares_timestamps_in_utc_whichever_carries_a_zone():
    naive = pa.array([datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 11)], pa.timestamp("s"))
    assert at_least(naive, datetime(2026, 1, 1, 10, tzinfo=UTC)).to_pylist() == [False, True]
    aware = pa.array([datetime(2026, 1, 1, 9, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    assert at_least(aware, datetime(2026, 1, 1, 9)).to_pylist() == [True]
    assert at_least(pa.array([1, 5, 9]), 5).to_pylist() == [False, True, True]


def test_a_missing_or_broken_file_is_refused(tmp_path):
    with pytest.raises(SourceError, match="no file"):
        file_batches(Source(kind="csv", path=str(tmp_path / "none.csv")))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(SourceError, match="not a parquet file"):
        file_batches(Source(kind="parquet", path=str(tmp_path / "bad.parquet")))


def test_timestamps_go_to_clickhouse_as_microseconds_since_1970_and_decimals_as_floats():
    from decimal import Decimal

    from importer.load import column_values

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    expected = int(moment.timestamp() * 1_000_000)
    assert column_values(pa.array([moment, None], pa.timestamp("us", tz="UTC"))) == [expected, None]
    assert column_values(pa.array([moment.replace(tzinfo=None)], pa.timestamp("s"))) == [expected]  # naive: UTC
    assert column_values(pa.array([Decimal("1.50")], pa.decimal128(10, 2))) == [1.5]
    assert column_values(pa.array(["a", None])) == ["a", None]
