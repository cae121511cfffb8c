"""Insights against ClickHouse, each figure checked against the same events computed in Python:
conditions on any property (analytics/conditions.py), each operator on custom properties (text,
numbers, booleans, nested, absent) and on a column, applied to trends, funnels and sessions; trends
broken down by a property with the rest as (other); and trends of any metric (persons, sessions, the
sum, average, median and 90th percentile of a numeric property)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from analytics import queries
from analytics.conditions import parse, value_sql
from analytics.filters import Filters
from analytics.run import records
from bench.queries import DERIVE_SESSIONS
from headwater.clickhouse import project_database
from headwater.migrations import migrate_project

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(days=3)
PLANS = ["free", "pro", "team", "Pro plan"]


def generate(seed: int = 3) -> list[dict]:
    rng, events = random.Random(seed), []
    for v in range(400):
        at = T0 + timedelta(minutes=rng.randint(0, 3 * 24 * 60 - 60))
        for e in range(rng.randint(1, 4)):
            properties: dict = {"plan": rng.choice(PLANS), "seats": rng.choice([1, 3, 5, 12, 40]),
                                "trial": rng.choice([True, False])}
            if rng.random() < 0.3:
                properties["coupon"] = rng.choice(["SPRING", "spring-2026", ""])
            if rng.random() < 0.5:
                properties["order"] = {"total": round(rng.uniform(0, 200), 2)}
            events.append({"message_id": str(uuid.uuid4()), "type": "track", "event": "Upgraded" if e else "Visited",
                           "anonymous_id": f"v{v}", "session_id": f"v{v}-s", "timestamp": at + timedelta(minutes=e),
                           "browser": rng.choice(["Chrome", "Firefox", "Safari"]), "properties": json.dumps(properties)})
    return events


@pytest.fixture(scope="module")
def loaded(clickhouse):
    project = f"w_{uuid.uuid4().hex[:8]}"
    migrate_project(clickhouse, project)
    events = generate()
    columns = list(events[0])
    clickhouse.execute(f"INSERT INTO {project_database(project)}.events ({', '.join(columns)}) VALUES",
                       [[e[c] for c in columns] for e in events])
    clickhouse.execute(DERIVE_SESSIONS.format(db=project_database(project)))  # what the sessionizer would write
    yield project, events
    clickhouse.execute(f"DROP DATABASE {project_database(project)} SYNC")


def _text(value) -> str:
    """A property's value as the conditions compare it: a string as it is, anything else as its JSON as
    ClickHouse writes it again (a whole float without its ".0")."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def meets(event: dict, text: str) -> bool:
    """The reference: the condition applied to one event in Python."""
    c = parse(text)
    if c.path:
        found = json.loads(event["properties"])
        for part in c.path:
            found = found.get(part) if isinstance(found, dict) else None
        present, value = found is not None, "" if found is None else _text(found)
    else:
        found, present, value = event[c.key], event[c.key] != "", event[c.key]
    values = [v.strip() for v in c.value.split(",")]
    if c.op in ("gt", "gte", "lt", "lte"):
        if not isinstance(found, (int, float)) or isinstance(found, bool):
            return False
        return {"gt": found > float(c.value), "gte": found >= float(c.value), "lt": found < float(c.value),
                "lte": found <= float(c.value)}[c.op]
    return {"eq": present and value == c.value, "ne": not (present and value == c.value),
            "contains": c.value in value, "not_contains": c.value not in value,
            "regex": re.search(c.value, value) is not None, "in": present and value in values,
            "not_in": not (present and value in values), "set": present, "not_set": not present}[c.op]


CONDITIONS = ["properties.plan:eq:pro", "properties.plan:ne:pro", "properties.plan:contains:ro",
              "properties.plan:not_contains:ro", "properties.plan:regex:^[Pp]ro", "properties.plan:in:free, team",
              "properties.plan:not_in:free,team", "properties.coupon:set", "properties.coupon:not_set",
              "properties.coupon:eq:", "properties.seats:gt:5", "properties.seats:lte:3", "properties.seats:eq:12",
              "properties.trial:eq:true", "properties.order.total:gte:100", "properties.order.total:lt:50",
              "properties.nothing.here:not_set", "browser:in:Chrome,Safari", "browser:regex:fox$"]


@pytest.mark.parametrize("condition", CONDITIONS)
def test_each_condition_counts_what_python_counts(loaded, clickhouse, condition):
    project, events = loaded
    query = queries.trends(project, SINCE, UNTIL, interval="month", filters=Filters(where=(parse(condition),)))
    rows = records(clickhouse, query)
    kept = [e for e in events if meets(e, condition)]
    assert sum(r["events"] for r in rows) == len(kept)
    assert sum(r["visitors"] for r in rows) == len({e["anonymous_id"] for e in kept})


def test_conditions_combine_and_narrow_funnels(loaded, clickhouse):
    project, events = loaded
    both = ("properties.plan:in:pro,team", "properties.seats:gte:5")
    filters = Filters(where=tuple(parse(c) for c in both))
    kept = [e for e in events if all(meets(e, c) for c in both)]
    rows = records(clickhouse, queries.trends(project, SINCE, UNTIL, interval="month", filters=filters))
    assert sum(r["events"] for r in rows) == len(kept)
    funnel = records(clickhouse, queries.funnel(project, ["Visited", "Upgraded"], SINCE, UNTIL, 86400, filters))
    visited = {e["anonymous_id"] for e in kept if e["event"] == "Visited"}
    upgraded = {e["anonymous_id"] for e in kept if e["event"] == "Upgraded" and e["anonymous_id"] in visited}
    assert [r["visitors"] for r in funnel] == [len(visited), len(upgraded)]


def test_a_session_is_kept_when_one_of_its_events_meets_the_conditions(loaded, clickhouse):
    project, events = loaded
    condition = "properties.order.total:gte:150"
    [summary] = records(clickhouse, queries.sessions(project, SINCE, UNTIL, Filters(where=(parse(condition),))))
    assert summary["sessions"] == len({e["session_id"] for e in events if meets(e, condition)}) > 0


def test_the_command_line_takes_where_and_refuses_a_bad_one(stack, loaded):
    project, events = loaded
    args = [sys.executable, "-m", "headwater", "query", "trends", "--project", project, "--interval", "month",
            "--from", SINCE.isoformat(), "--to", UNTIL.isoformat(), "--format", "json"]
    shown = subprocess.run([*args, "--where", "properties.seats:gt:5"], env=stack.env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert sum(json.loads(line)["events"] for line in shown.stdout.splitlines()) == \
        sum(meets(e, "properties.seats:gt:5") for e in events)
    refused = subprocess.run([*args, "--where", "properties.seats:gt:many"], env=stack.env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0 and "needs a number" in refused.stderr and "Traceback" not in refused.stderr


def test_a_trend_breaks_down_by_a_property_with_the_rest_as_other(loaded, clickhouse):
    project, events = loaded
    rows = records(clickhouse, queries.trends(project, SINCE, UNTIL, interval="month", breakdown="properties.seats",
                                              breakdown_limit=2))
    seats = Counter(_text(json.loads(e["properties"])["seats"]) for e in events)
    top_two = sorted(seats, key=lambda value: (-seats[value], value))[:2]
    shown = {r["breakdown"]: r["events"] for r in rows}
    assert shown == {**{v: seats[v] for v in top_two}, "(other)": sum(n for v, n in seats.items() if v not in top_two)}
    nested = records(clickhouse, queries.trends(project, SINCE, UNTIL, interval="month",
                                                breakdown="properties.order.total", breakdown_limit=1000))
    totals = Counter(_text(json.loads(e["properties"])["order"]["total"]) if "order" in json.loads(e["properties"])
                     else "" for e in events)
    assert {r["breakdown"]: r["events"] for r in nested} == dict(totals)
    with pytest.raises(queries.QueryError, match="breakdown"):
        queries.trends(project, SINCE, UNTIL, breakdown="plan")


def _percentile(values: list[float], q: float) -> float:
    """ClickHouse's quantileExact: the value at index floor(q * n) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def test_a_trend_of_any_metric_matches_python(loaded, clickhouse):
    project, events = loaded
    upgraded = [e for e in events if e["event"] == "Upgraded"]
    totals = [json.loads(e["properties"])["order"]["total"] for e in upgraded if "order" in json.loads(e["properties"])]
    expected = {"count": len(upgraded), "persons": len({e["anonymous_id"] for e in upgraded}),
                "sessions": len({e["session_id"] for e in upgraded}), "sum": sum(totals),
                "avg": sum(totals) / len(totals), "median": _percentile(totals, 0.5), "p90": _percentile(totals, 0.9)}
    for metric, value in expected.items():
        [row] = records(clickhouse, queries.trends(project, SINCE, UNTIL, event="Upgraded", interval="month",
                                                   metric=metric, of="properties.order.total"))
        assert row["value"] == pytest.approx(value), metric
    with pytest.raises(queries.QueryError, match="needs a numeric property"):
        queries.trends(project, SINCE, UNTIL, metric="sum")
    with pytest.raises(queries.QueryError, match="metric must be one of"):
        queries.trends(project, SINCE, UNTIL, metric="mode")


PROPERTY_TEXTS = ['{"plan":"pro"}', '{"\\u0070lan":"team"}', '{"a":{"plan":5}}', '{"other":"plan"}',
                  '{"pl\\/an":"slash"}', '{}', '{"note":"say \\"plan\\""}', '{"plan":null}', '{"a":{"pl\\u0061n":7}}']


@pytest.mark.parametrize("key", ["properties.plan", "properties.a.plan", "properties.pl/an"])
def test_a_property_is_read_whether_its_key_is_written_plainly_or_escaped(clickhouse, key):
    """Properties whose text cannot hold the key are not parsed (conditions.may_have); the values and
    the presence must be what Python's json reads from every text."""
    expression, params = value_sql(key, "by")
    present, present_params = parse(f"{key}:set").sql("w0")
    rows = clickhouse.execute(f"SELECT {expression}, {present} FROM (SELECT arrayJoin(%(texts)s) AS properties)",
                              {**params, **present_params, "texts": PROPERTY_TEXTS})
    assert [(value, bool(has)) for value, has in rows] == [_lookup(text, key) for text in PROPERTY_TEXTS]


def _lookup(text: str, key: str) -> tuple[str, bool]:
    """A property's value as the queries read it ('' when absent or null; JSON for a number) and
    whether the key is there."""
    found = json.loads(text)
    for part in key.removeprefix("properties.").split("."):
        if not isinstance(found, dict) or part not in found:
            return "", False
        found = found[part]
    return ("" if found is None else found if isinstance(found, str) else json.dumps(found)), True
