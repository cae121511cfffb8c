"""Cohorts on the real stack: saved through the admin API (a bad one refused with its problem), computed
in ClickHouse over persons or ids, usable as a filter by every query, and equal to the SQL the docs give."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from analytics import cohorts, overview, queries
from analytics.filters import Filters
from tests.helpers import Admin, count_rows, dashboard_session, post, wait_for

pytestmark = pytest.mark.integration
DOCS = Path(__file__).resolve().parents[2] / "docs" / "persons.md"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
REPEAT = {"name": "repeat-buyers", "rules": [{"did": "Order Completed", "at_least": 2, "within_days": 30},
                                             {"did_not": "Refund Requested", "within_days": 30}]}
PAYING = {"name": "paying", "rules": [{"trait": "plan", "in": ["pro", "enterprise"]}]}


def event(kind: str, days_ago: float, visitor: str, **fields) -> dict:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return {"type": kind, "anonymousId": visitor, "messageId": str(uuid.uuid4()),
            "timestamp": at.isoformat().replace("+00:00", "Z"), "context": {"userAgent": BROWSER}, **fields}


def order(days_ago: float, visitor: str) -> dict:
    return event("track", days_ago, visitor, event="Order Completed")


# ann orders once on her laptop and once on her phone (a repeat buyer as a person, not as either id) and
# is on the pro plan; bob orders twice and asks for a refund; dan orders twice on one device; eve once;
# and two orders 40 days ago, outside the window, for fay
EVENTS = [
    event("identify", 10, "ann-laptop", userId="ann", traits={"plan": "pro"}), order(9, "ann-laptop"),
    event("identify", 5, "ann-phone", userId="ann"), order(4, "ann-phone"),
    order(8, "bob-1"), order(7, "bob-1"), event("track", 6, "bob-1", event="Refund Requested"),
    event("identify", 6, "bob-1", userId="bob", traits={"plan": "free"}),
    order(3, "dan-1"), order(2, "dan-1"),
    order(2, "eve-1"),
    order(40, "fay-1"), order(39, "fay-1"),
]


def documented_sql(db: str) -> str:
    block = re.search(r"```sql\n-- cohort: repeat-buyers\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/persons.md lost its cohort SQL"
    return block.group(1).replace("hw_shop.", f"{db}.")


def members(clickhouse, cohort: cohorts.Cohort, count_ids: bool) -> int:
    sql, params = cohorts.size_sql(cohort, count_ids)
    return clickhouse.execute(sql, params)[0][0]


def test_cohorts_count_persons_filter_every_query_and_match_the_documented_sql(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project, db = created["project"]["id"], created["project"]["database"]
    refused = admin.call("PATCH", f"/v1/projects/{project}/config",
                         {"cohorts": [{"name": "c", "rules": [{"did": "A", "at_least": 0}]}]})
    assert refused.status_code == 400 and "at_least must be a whole number" in refused.text
    saved = admin.call("PATCH", f"/v1/projects/{project}/config", {"cohorts": [REPEAT, PAYING]})
    assert saved.status_code == 200, saved.text
    assert [c["name"] for c in saved.json()["project"]["cohorts"]] == ["repeat-buyers", "paying"]

    reply = post(stack.collector_url, "/v1/batch", {"batch": EVENTS}, created["keys"]["server_key"])
    assert reply.status_code == 200, reply.text
    wait_for(lambda: count_rows(clickhouse, db) == len(EVENTS), 60)
    wait_for(lambda: clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {db}.person_ids")[0][0] == 5, 60)

    repeat, paying = (cohorts.find(project, [REPEAT, PAYING], name) for name in ("repeat-buyers", "paying"))
    assert (members(clickhouse, repeat, False), members(clickhouse, repeat, True)) == (2, 1)  # ann and dan; dan
    assert (members(clickhouse, paying, False), members(clickhouse, paying, True)) == (1, 1)  # ann; her laptop
    assert clickhouse.execute(documented_sql(db))[0][0] == members(clickhouse, repeat, False)

    since, until = datetime.now(UTC) - timedelta(days=60), datetime.now(UTC) + timedelta(days=1)

    def visitors_and_events(filters: Filters) -> tuple[int, int]:
        query = overview.traffic(project, since, until, filters.resolve(project, [REPEAT]))
        [(_, visitors, _, events)] = [row for row in clickhouse.execute(query.sql, query.params) if row[0]]
        return visitors, events

    assert visitors_and_events(Filters(cohort="repeat-buyers")) == (2, 6)  # ann's 4 events on two ids, dan's 2
    assert visitors_and_events(Filters(cohort="repeat-buyers", count_ids=True)) == (1, 2)
    assert visitors_and_events(Filters()) == (5, len(EVENTS))  # ann, bob, dan, eve, fay
    funnel = queries.funnel(project, ["Order Completed", "Refund Requested"], since, until, 30 * 86400,
                            Filters(cohort="repeat-buyers").resolve(project, [REPEAT]))
    assert [row[1] for row in clickhouse.execute(funnel.sql, funnel.params)] == [2, 0]

    shown = subprocess.run([sys.executable, "-m", "headwater", "query", "top", "events", "--project", project,
                            "--cohort", "repeat-buyers", "--from", since.isoformat(), "--to", until.isoformat(),
                            "--format", "json"], env=stack.env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert [json.loads(line) for line in shown.stdout.splitlines()] == [
        {"value": "Order Completed", "visitors": 2, "events": 4}]
    unknown = subprocess.run([sys.executable, "-m", "headwater", "query", "trends", "--project", project, "--cohort",
                              "whales"], env=stack.env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "no cohort 'whales'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_trends_funnels_and_retention_break_down_by_cohorts(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project, db = created["project"]["id"], created["project"]["database"]
    assert admin.call("PATCH", f"/v1/projects/{project}/config", {"cohorts": [REPEAT, PAYING]}).status_code == 200
    reply = post(stack.collector_url, "/v1/batch", {"batch": EVENTS}, created["keys"]["server_key"])
    assert reply.status_code == 200, reply.text
    wait_for(lambda: count_rows(clickhouse, db) == len(EVENTS), 60)
    wait_for(lambda: clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {db}.person_ids")[0][0] == 5, 60)
    by = tuple(cohorts.for_breakdown(project, [REPEAT, PAYING], ["repeat-buyers", "paying"]))
    since, until = datetime.now(UTC) - timedelta(days=60), datetime.now(UTC) + timedelta(days=1)

    def run(query: queries.Query) -> list[dict]:
        return [dict(zip(query.columns, row)) for row in clickhouse.execute(query.sql, query.params)]

    trends = run(queries.trends(project, since, until, interval="month", by_cohorts=by))
    events = {name: sum(r["events"] for r in trends if r["breakdown"] == name) for name in ("repeat-buyers", "paying")}
    assert events == {"repeat-buyers": 6, "paying": 4}  # ann's 4 and dan's 2; ann's 4 (a person in both)
    funnel = run(queries.funnel(project, ["Order Completed", "Refund Requested"], since, until, 30 * 86400,
                                by_cohorts=by))
    assert [(r["cohort"], r["step"], r["visitors"]) for r in funnel] == [
        ("paying", 1, 1), ("paying", 2, 0), ("repeat-buyers", 1, 2), ("repeat-buyers", 2, 0)]
    retention = run(queries.retention(project, since, until, period="week", periods=8, by_cohorts=by))
    sizes = {r["segment"]: 0 for r in retention}
    for r in retention:
        if r["periods_later"] == 0:
            sizes[r["segment"]] += r["cohort_size"]
    assert sizes == {"repeat-buyers": 2, "paying": 1}
    shown = subprocess.run([sys.executable, "-m", "headwater", "query", "funnel", "Order Completed",
                            "Refund Requested", "--project", project, "--by-cohorts", "repeat-buyers", "--from",
                            since.isoformat(), "--to", until.isoformat(), "--window", str(30 * 86400), "--format",
                            "json"], env=stack.env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert [(r["cohort"], r["visitors"]) for r in map(json.loads, shown.stdout.splitlines())] == [
        ("repeat-buyers", 2), ("repeat-buyers", 0)]
    cookies = dashboard_session(stack.dashboard_url, settings.admin_token)
    page = httpx.get(f"{stack.dashboard_url}/p/{project}/overview", cookies=cookies, timeout=60,
                     params={"range": "custom", "from": since.date().isoformat(), "to": until.date().isoformat(),
                             "interval": "day", "by": "cohorts"})
    assert page.status_code == 200, page.text[-2000:]
    source = html.unescape(re.search(r'data-chart="trend" data-source="([^"]+)"', page.text).group(1))
    answer = httpx.get(f"{stack.dashboard_url}{source}", cookies=cookies, timeout=60)  # as the page's script asks
    assert answer.status_code == 200, answer.text[-2000:]
    chart = answer.json()["chart"]
    lines = {c["name"]: c["visitors"] for c in chart["cohorts"]}
    # one visitor a day on each day a member came: ann on 4 days (she is in both), dan on 2
    assert {name: (sum(days), max(days)) for name, days in lines.items()} == {"repeat-buyers": (6, 1),
                                                                              "paying": (4, 1)}
