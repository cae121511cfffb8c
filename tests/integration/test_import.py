"""`headwater import` on the real servers: users from a real PostgreSQL (Debian's, started by the test
session), organizations from a Parquet file and plans from a CSV file, loaded into a project's database,
incrementally and in full, then again after the sources changed, and once more unchanged: the tables
equal their sources, and nothing is duplicated. Then the epic's question ("users in organizations larger
than 500 people who …") answered in SQL over the imported tables and the events, against a direct
computation."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics import cohorts
from analytics.filters import Filters
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
EPIC_QUESTION = Path(__file__).resolve().parents[2] / "docs" / "imports.md"
T0 = datetime(2026, 11, 2, 9, tzinfo=UTC)
# a browser's: an event without a user agent counts as a bot's, which queries leave out
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def organizations(changed: dict[int, int] | None = None, extra: int = 0) -> pa.Table:
    """40 organizations of growing size; ``changed`` sets new sizes (and moves their updated_at on)."""
    changed = changed or {}
    ids = list(range(1, 41 + extra))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "name": [f"org {i}" for i in ids],
        "size": pa.array([changed.get(i, i * 30) for i in ids], pa.int64()),
        "updated_at": pa.array([T0 + (timedelta(days=2) if i in changed or i > 40 else timedelta(minutes=i))
                                for i in ids], pa.timestamp("us", tz="UTC")),
    })


def headwater_import(plan: Path, *only: str) -> dict:
    command = [sys.executable, "-m", "headwater", "import", str(plan), *(a for name in only for a in ("--only", name))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported_" in done.stderr and "rows" in done.stderr  # the progress, on the terminal
    return {t["table"]: t for t in json.loads(done.stdout)["tables"]}


def table(clickhouse, db: str, name: str, columns: str) -> list[tuple]:
    return clickhouse.execute(f"SELECT {columns} FROM {db}.imported_{name} FINAL ORDER BY 1")


def duplicates(clickhouse, db: str, name: str) -> int:
    clickhouse.execute(f"OPTIMIZE TABLE {db}.imported_{name} FINAL")
    return clickhouse.execute(f"SELECT count() - uniqExact(id) FROM {db}.imported_{name}")[0][0]


@pytest.fixture
def project(stack, settings):
    created = Admin(settings).create_project(prefix="imports")
    return created["project"]["id"], created["project"]["database"], created["keys"]["server_key"]


def test_tables_load_fully_and_incrementally_and_a_rerun_duplicates_nothing(stack, clickhouse, postgres, project,
                                                                            tmp_path):
    project_id, db, _ = project
    schema = f"s_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"""CREATE SCHEMA {schema};
        CREATE TABLE {schema}.users (id int PRIMARY KEY, external_id text NOT NULL, organization_id int,
                                     updated_at timestamptz NOT NULL);
        INSERT INTO {schema}.users SELECT i, 'user-' || i, 1 + i % 40, '{T0.isoformat()}'::timestamptz
        + i * interval '1 second' FROM generate_series(1, 1000) AS i;""")
    pq.write_table(organizations(), tmp_path / "organizations.parquet")
    (tmp_path / "plans.csv").write_text("id,name,price\n1,free,0\n2,team,49.5\n3,enterprise,990\n")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "users", "key": ["id"], "cursor": "updated_at", "user_id": "external_id",
         "source": {"kind": "postgresql", "host": "127.0.0.1", "port": postgres.port, "database": "postgres",
                    "schema": schema, "table": "users", "user": postgres.USER}},
        {"name": "organizations", "key": ["id"], "cursor": "updated_at",
         "source": {"kind": "parquet", "path": str(tmp_path / "organizations.parquet")}},
        {"name": "plans", "key": ["id"], "source": {"kind": "csv", "path": str(tmp_path / "plans.csv")}}]}))

    first = headwater_import(plan)
    assert {name: (t["mode"], t["rows_loaded"], t["rows_in_table"]) for name, t in first.items()} == {
        "imported_users": ("incremental", 1000, 1000), "imported_organizations": ("incremental", 40, 40),
        "imported_plans": ("full", 3, 3)}

    # the sources change: ten users move to organization 7 and five join; two organizations grow and one
    # is new; a plan is withdrawn and another is repriced
    later = (T0 + timedelta(days=3)).isoformat()
    postgres.psql(f"""UPDATE {schema}.users SET organization_id = 7, updated_at = '{later}' WHERE id <= 10;
        INSERT INTO {schema}.users SELECT i, 'user-' || i, 3, '{later}' FROM generate_series(1001, 1005) AS i;""")
    pq.write_table(organizations({5: 800, 6: 900}, extra=1), tmp_path / "organizations.parquet")
    (tmp_path / "plans.csv").write_text("id,name,price\n1,free,0\n2,team,59.5\n")
    second = headwater_import(plan)
    # incremental: the rows at or after the largest cursor loaded (the boundary's again: user 1000,
    # organization 40), no more
    assert second["imported_users"]["rows_loaded"] == 16 and second["imported_users"]["rows_in_table"] == 1005
    assert second["imported_organizations"]["rows_loaded"] == 4
    assert second["imported_organizations"]["rows_in_table"] == 41
    assert table(clickhouse, db, "plans", "id, name, price") == [(1, "free", 0.0), (2, "team", 59.5)]
    users = dict(table(clickhouse, db, "users", "id, organization_id"))
    assert [users[i] for i in (1, 10, 11, 1005)] == [7, 7, 1 + 11 % 40, 3]
    sizes = dict(table(clickhouse, db, "organizations", "id, size"))
    assert (sizes[5], sizes[6], sizes[7], sizes[41]) == (800, 900, 210, 1230)

    third = headwater_import(plan)  # nothing changed: the boundary's rows again, one row each
    assert third["imported_users"]["rows_loaded"] == 15 and third["imported_organizations"]["rows_loaded"] == 3
    assert {name: t["rows_in_table"] for name, t in third.items()} == {
        "imported_users": 1005, "imported_organizations": 41, "imported_plans": 2}
    assert [duplicates(clickhouse, db, name) for name in ("users", "organizations", "plans")] == [0, 0, 0]


def test_a_bad_plan_or_source_is_refused_with_the_reason(stack, postgres, project, tmp_path):
    project_id, _, _ = project
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "Users!", "key": [], "source": {"kind": "postgresql"}}]}))
    done = subprocess.run([sys.executable, "-m", "headwater", "import", str(plan)], capture_output=True, text=True)
    assert done.returncode != 0 and "error: the plan has problems" in done.stderr
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "users", "key": ["id"], "source": {"kind": "postgresql", "table": "users"}},
        {"name": "files", "key": ["id"], "source": {"kind": "csv", "host": "db.internal"}}]}))
    done = subprocess.run([sys.executable, "-m", "headwater", "import", str(plan)], capture_output=True, text=True)
    for problem in ("tables (users).source.host: a postgresql source needs it",
                    "tables (users).source.user: a postgresql source needs it",
                    "tables (files).source.path: a csv source needs the file's path",
                    "tables (files).source.host: a csv source is a file"):
        assert problem in done.stderr
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "gone", "key": ["id"], "source": {"kind": "postgresql", "host": "127.0.0.1", "port": postgres.port,
                                                   "table": "no_such_table", "user": postgres.USER}}]}))
    done = subprocess.run([sys.executable, "-m", "headwater", "import", str(plan)], capture_output=True, text=True)
    assert done.returncode != 0 and "gone: cannot read the postgresql table" in done.stderr
    (tmp_path / "t.csv").write_text("name\nx\n")
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "t", "key": ["id"], "source": {"kind": "csv", "path": str(tmp_path / "t.csv")}}]}))
    done = subprocess.run([sys.executable, "-m", "headwater", "import", str(plan)], capture_output=True, text=True)
    assert done.returncode != 0 and "t: the source has no column 'id' (it has: name)" in done.stderr


def epic_sql(db: str) -> str:
    """The worked example of docs/imports.md, on this project's database."""
    text = EPIC_QUESTION.read_text()
    sql = text.split("```sql\n-- the epic's question\n", 1)[1].split("```", 1)[0]
    return sql.replace("hw_shop", db)


def test_the_epics_question_is_answered_over_imported_tables_and_events(stack, clickhouse, postgres, project,
                                                                       tmp_path):
    project_id, db, key = project
    schema = f"s_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"""CREATE SCHEMA {schema};
        CREATE TABLE {schema}.users (id int PRIMARY KEY, external_id text, organization_id int);
        INSERT INTO {schema}.users SELECT i, 'user-' || i, 1 + i % 40 FROM generate_series(1, 200) AS i;""")
    pq.write_table(organizations(), tmp_path / "organizations.parquet")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "users", "key": ["id"], "user_id": "external_id",
         "source": {"kind": "postgresql", "host": "127.0.0.1", "port": postgres.port, "schema": schema,
                    "table": "users", "user": postgres.USER}},
        {"name": "organizations", "key": ["id"],
         "source": {"kind": "parquet", "path": str(tmp_path / "organizations.parquet")}}]}))
    headwater_import(plan)
    now = datetime.now(UTC)
    exporters = [i for i in range(1, 201) if i % 3 == 0]
    events = [{"type": "track", "event": "Report Exported" if i in exporters else "Report Viewed",
               "userId": f"user-{i}", "messageId": str(uuid.uuid4()), "context": {"userAgent": BROWSER},
               "timestamp": (now - timedelta(days=i % 20)).isoformat().replace("+00:00", "Z")} for i in range(1, 201)]
    assert post(stack.collector_url, "/v1/batch", {"batch": events}, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, db) == 200, 60)
    answer = sorted(row[0] for row in clickhouse.execute(epic_sql(db)))
    size = {i: i * 30 for i in range(1, 41)}
    expected = sorted(f"user-{i}" for i in exporters if size[1 + i % 40] > 500)
    assert answer == expected and len(expected) > 10

    # the same question through the query library: a view at the source gives each user's organization
    # size, imported; a cohort of its users is a filter (and a breakdown) like any other
    postgres.psql(f"""CREATE VIEW {schema}.user_sizes AS SELECT external_id, organization_id * 30 AS size
                      FROM {schema}.users""")
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "user_sizes", "key": ["external_id"], "user_id": "external_id",
         "source": {"kind": "postgresql", "host": "127.0.0.1", "port": postgres.port, "schema": schema,
                    "table": "user_sizes", "user": postgres.USER}}]}))
    assert headwater_import(plan)["imported_user_sizes"]["rows_in_table"] == 200
    big = {"name": "big-orgs", "rules": [{"imported": "user_sizes", "by": "external_id", "column": "size", "gt": 500}]}
    reply = Admin(stack.settings).call("PATCH", f"/v1/projects/{project_id}/config", {"cohorts": [big]})
    assert reply.status_code == 200, reply.text
    members = cohorts.find(project_id, [big], "big-orgs")
    assert clickhouse.execute(*cohorts.size_sql(members, count_ids=False))[0][0] == sum(
        1 for i in range(1, 201) if size[1 + i % 40] > 500)
    only_big = Filters(cohort="big-orgs").resolve(project_id, [big])
    exported = clickhouse.execute(f"SELECT uniqExact(user_id) FROM {db}.events WHERE event = 'Report Exported'"
                                  f"{only_big.events_condition()}", only_big.params())[0][0]
    assert exported == len(expected)


def test_a_mysql_table_loads_incrementally_and_a_rerun_duplicates_nothing(stack, clickhouse, mysql, project,
                                                                         tmp_path):
    project_id, db, _ = project
    database = f"app_{uuid.uuid4().hex[:8]}"
    mysql.sql(f"""CREATE DATABASE {database}; USE {database};
        CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL, total DECIMAL(10, 2),
                             changed_at DATETIME(3) NOT NULL);
        INSERT INTO orders SELECT seq, CONCAT('user-', seq % 50), seq * 1.5, '2026-11-02 09:00:00' + INTERVAL seq SECOND
        FROM seq_1_to_300;""")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"project": project_id, "tables": [
        {"name": "orders", "key": ["id"], "cursor": "changed_at", "user_id": "customer",
         "source": {"kind": "mysql", "host": "127.0.0.1", "port": mysql.port, "database": database,
                    "table": "orders", "user": mysql.USER}}]}))
    assert headwater_import(plan)["imported_orders"]["rows_loaded"] == 300
    mysql.sql("UPDATE orders SET total = 1 WHERE id = 7; UPDATE orders SET changed_at = '2026-11-09 00:00:00' "
              "WHERE id = 7; INSERT INTO orders VALUES (301, 'user-1', 2.5, '2026-11-09 00:00:00');", database)
    second = headwater_import(plan)["imported_orders"]
    assert (second["rows_loaded"], second["rows_in_table"]) == (3, 301)  # 300 (the boundary), 7, 301
    assert headwater_import(plan)["imported_orders"]["rows_in_table"] == 301
    assert table(clickhouse, db, "orders", "id, toFloat64(total)")[6] == (7, 1.0)
    assert duplicates(clickhouse, db, "orders") == 0
