"""The query library against ClickHouse, each query checked against an independent computation in
Python over the same generated events: duplicates (a client's retry), one-event visitors, steps exactly
on the funnel window, events exactly on the range's edges, visitors with only a user id, equal times,
periods in several time zones, and empty ranges."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from analytics import queries
from analytics.queries import QueryError
from analytics.run import rows
from headwater.clickhouse import project_database
from headwater.migrations import migrate_project

pytestmark = pytest.mark.integration
UTC = UTC
T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
SINCE, UNTIL = T0, T0 + timedelta(days=21)
STEPS = ["Viewed Product", "Added To Cart", "Checkout", "Paid"]
WINDOW_S = 3600
PAGES = ["/", "/pricing", "/docs", "/blog/launch", "/signup"]
MEDIUMS = {"Google": "search", "Twitter": "social", "Newsletter": "email", "": ""}
# the channel of a visit without campaign tags, by its referrer's medium (analytics/channels.py)
CHANNELS = {"search": "Organic Search", "social": "Organic Social", "email": "Email", "": "Direct"}


def event(visitor: str, ts: datetime, name: str, *, page: str = "", user: str = "", session: str = "",
          message_id: str | None = None, **columns) -> dict:
    return {"message_id": message_id or str(uuid.uuid4()), "type": "page" if page else "track",
            "event": "page" if page else name, "anonymous_id": visitor, "user_id": user, "session_id": session,
            "timestamp": ts, "url_path": page, **columns}


def generate(seed: int = 11) -> list[dict]:
    rng, out = random.Random(seed), []
    for v in range(150):
        visitor = f"v{v}"
        browser, country = rng.choice(["Chrome", "Firefox", "Safari"]), rng.choice(["DE", "US", "IN", "JP", ""])
        source = rng.choice(["Google", "Twitter", "", "Newsletter"])
        kind = {"os": ["Windows", "macOS", "iOS", "Android"][v % 4], "device": ["Other", "iPhone", "Pixel 8"][v % 3],
                "utm_campaign": ["", "", "autumn", "launch"][v % 4]}
        ts = T0 + timedelta(minutes=rng.randint(0, 21 * 24 * 60 - 1))
        for s in range(rng.randint(1, 4)):
            session = f"{visitor}-s{s}"
            for _ in range(rng.randint(1, 5)):
                out.append(event(visitor, ts, "", page=rng.choice(PAGES), session=session, browser=browser,
                                 country=country, referrer_source=source, referrer_medium=MEDIUMS[source], **kind))
                ts += timedelta(seconds=rng.randint(1, 600))
            for step in STEPS[:rng.randint(0, 4)]:
                out.append(event(visitor, ts, step, session=session, browser=browser, country=country, **kind))
                ts += timedelta(seconds=rng.choice([5, 60, 900, 1800, 2400]))
            ts += timedelta(hours=rng.choice([2, 20, 50, 170]))
    # the edges, with step names of their own so that each funnel below holds only them
    out.append(event("lonely", T0 + timedelta(days=3, hours=5), "", page="/"))  # a one-event visitor
    out += [event("edge", T0 + timedelta(days=4), "E1"),  # the last step exactly on the window
            event("edge", T0 + timedelta(days=4, minutes=10), "E2"),
            event("edge", T0 + timedelta(days=4, minutes=20), "E3"),
            event("edge", T0 + timedelta(days=4, seconds=WINDOW_S), "E4")]
    out += [event("late", T0 + timedelta(days=5), "E1"),  # one millisecond too late
            event("late", T0 + timedelta(days=5, seconds=WINDOW_S, milliseconds=1), "E2")]
    tie = T0 + timedelta(days=6, hours=23, minutes=30)  # equal times, and near midnight in UTC
    out += [event("tie", tie, "T1"), event("tie", tie, "T2")]
    out += [event("", T0 + timedelta(days=2, hours=1), STEPS[0], user="server-user"),  # no anonymous id
            event("", T0 + timedelta(days=2, hours=2), STEPS[1], user="server-user")]
    out += [event("first", SINCE, "", page="/edge-start"),  # exactly on the range's edges
            event("last", UNTIL, "", page="/edge-end"),
            event("last", UNTIL - timedelta(milliseconds=1), STEPS[0])]
    retried = event("retry", T0 + timedelta(days=8), "", page="/pricing")
    return [retried, *out, dict(retried)]  # a client's retry, the two copies in different inserts


@pytest.fixture(scope="module")
def data(clickhouse):
    project = f"q_{uuid.uuid4().hex[:8]}"
    migrate_project(clickhouse, project)
    clickhouse.execute(f"SYSTEM STOP MERGES {project_database(project)}.events")  # keep the retry's copy
    generated = generate()
    half = len(generated) // 2
    for part in (generated[:half], generated[half:]):  # two inserts: duplicates in different parts
        for group in _by_columns(part):
            cols = list(group[0])
            clickhouse.execute(f"INSERT INTO {project_database(project)}.events ({', '.join(cols)}) VALUES",
                               [list(e.values()) for e in group])
    return project, _dedup(generated)


def _by_columns(events: list[dict]) -> list[list[dict]]:
    groups = defaultdict(list)
    for e in events:
        groups[tuple(e)].append(e)
    return list(groups.values())


def _dedup(events: list[dict]) -> list[dict]:
    return list({e["message_id"]: e for e in events}.values())


def visitor(e: dict) -> str:
    return e["anonymous_id"] or e["user_id"]


def in_range(e: dict, since: datetime = SINCE, until: datetime = UNTIL) -> bool:
    return since <= e["timestamp"] < until


# --- independent computations ---------------------------------------------------------------

def local(ts: datetime, tz: str) -> datetime:
    return ts.astimezone(ZoneInfo(tz))


def period_start(ts: datetime, unit: str, tz: str):
    t = local(ts, tz)
    if unit == "day":
        return t.date()
    if unit == "week":
        return t.date() - timedelta(days=t.weekday())
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.date().replace(day=1)


def expected_trends(events, unit, tz, breakdown=None, name=None, since=SINCE, until=UNTIL):
    groups = defaultdict(list)
    for e in events:
        if in_range(e, since, until) and (name is None or e["event"] == name):
            groups[(period_start(e["timestamp"], unit, tz), e.get(breakdown, "") if breakdown else "")].append(e)
    out = [(p, b, len(es), len({visitor(e) for e in es})) for (p, b), es in groups.items()]
    return sorted(out, key=lambda r: (r[0], -r[2], r[1]))


def greedy_chain(evs: list[tuple[int, int]], start: int, window_ms: int) -> list[int]:
    chain = [evs[start][0]]
    for ts, step in evs[start + 1:]:
        if step == len(chain) + 1 and ts - chain[0] <= window_ms:
            chain.append(ts)
    return chain


def expected_funnel(events, steps, window_s, since=SINCE, until=UNTIL):
    window_ms, per_visitor = window_s * 1000, defaultdict(list)
    until_window = until + timedelta(seconds=window_s)
    for e in events:
        if e["event"] in steps and since <= e["timestamp"] < until_window:
            step = steps.index(e["event"]) + 1
            if step == 1 and e["timestamp"] >= until:
                continue
            per_visitor[visitor(e)].append((int(e["timestamp"].timestamp() * 1000), step))
    chains = []
    for evs in per_visitor.values():
        evs.sort()
        starts = [greedy_chain(evs, i, window_ms) for i, (_, s) in enumerate(evs) if s == 1]
        if starts:
            best = max(len(c) for c in starts)
            chains.append(next(c for c in starts if len(c) == best))
    out = []
    for k in range(1, len(steps) + 1):
        reached = [c for c in chains if len(c) >= k]
        gaps = sorted(c[k - 1] - c[k - 2] for c in reached) if k > 1 else []
        median = gaps[len(gaps) // 2] / 1000 if gaps else 0.0
        average = sum(gaps) / len(gaps) / 1000 if gaps else 0.0
        out.append((k, len(reached), median, average))
    return out


def expected_retention(events, unit, periods, tz, cohort_event=None, return_event=None):
    cohort, returns = {}, defaultdict(set)
    for e in events:
        if not in_range(e):
            continue
        p = period_start(e["timestamp"], unit, tz)
        if cohort_event is None or e["event"] == cohort_event:
            cohort[visitor(e)] = min(p, cohort.get(visitor(e), p))
        if return_event is None or e["event"] == return_event:
            returns[visitor(e)].add(p)
    sizes = Counter(cohort.values())
    back = Counter()
    step = 1 if unit == "day" else 7
    for v, c in cohort.items():
        for r in returns[v]:
            k = (r - c).days // step
            if r >= c and k <= periods:
                back[(c, k)] += 1
    out = [(c, sizes[c], k, n) for (c, k), n in back.items()]
    out += [(c, sizes[c], 0, 0) for c in sizes if not any(key[0] == c for key in back)]
    return sorted(out, key=lambda r: (r[0], r[2]))


def expected_top(events, column, condition, limit):
    groups = defaultdict(list)
    for e in events:
        if in_range(e) and condition(e):
            groups[e.get(column, "")].append(e)
    out = [(value, len({visitor(e) for e in es}), len(es)) for value, es in groups.items()]
    return sorted(out, key=lambda r: (-r[1], -r[2], r[0]))[:limit]


def expected_paths(events, target, depth, limit):
    sequences = defaultdict(list)
    for e in events:
        if in_range(e):
            sequences[e["session_id"] or visitor(e)].append(e)
    counts = Counter()
    for es in sequences.values():
        labels = [e["url_path"] if e["type"] == "page" else e["event"]
                  for e in sorted(es, key=lambda e: (e["timestamp"], e["message_id"]))]
        if target in labels:
            at = labels.index(target)
            counts[" → ".join(labels[max(0, at - depth):at + 1])] += 1
    return sorted(counts.items(), key=lambda r: (-r[1], r[0]))[:limit]


# --- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("unit", ["day", "week"])
def test_trends_by_period_in_a_time_zone(clickhouse, data, tz, unit):
    project, events = data
    since = datetime.combine(SINCE.date(), datetime.min.time(), ZoneInfo(tz))
    got = rows(clickhouse, queries.trends(project, since, UNTIL, interval=unit, tz=tz))
    assert got == expected_trends(events, unit, tz, since=since)
    assert sum(r[2] for r in got) == sum(1 for e in events if in_range(e, since, UNTIL))


def test_trends_with_a_breakdown_and_an_event(clickhouse, data):
    project, events = data
    got = rows(clickhouse, queries.trends(project, SINCE, UNTIL, event="page", interval="day", breakdown="browser"))
    assert got == expected_trends(events, "day", "UTC", breakdown="browser", name="page")
    assert rows(clickhouse, queries.trends(project, SINCE, UNTIL, interval="hour")) == \
        expected_trends(events, "hour", "UTC")


def test_the_retried_event_counts_once(clickhouse, data):
    project, events = data
    db = project_database(project)
    assert clickhouse.execute(f"SELECT count() FROM {db}.events WHERE anonymous_id = 'retry'")[0][0] == 2
    day8 = T0 + timedelta(days=8)
    got = rows(clickhouse, queries.trends(project, day8, day8 + timedelta(days=1), event="page", breakdown="url_path"))
    assert got == expected_trends(events, "day", "UTC", "url_path", "page", day8, day8 + timedelta(days=1))


def test_funnel_conversion_and_time_between_steps(clickhouse, data):
    project, events = data
    got = rows(clickhouse, queries.funnel(project, STEPS, SINCE, UNTIL, WINDOW_S))
    want = expected_funnel(events, STEPS, WINDOW_S)
    assert [r[:2] for r in got] == [r[:2] for r in want]
    for (_, _, median, average), (_, _, want_median, want_average) in zip(got, want):
        assert median == pytest.approx(want_median) and average == pytest.approx(want_average)
    assert got[0][1] > got[-1][1] > 0


def test_funnel_window_edges(clickhouse, data):
    project, events = data
    # "edge" reaches E4 exactly at the window; "late" reaches E2 one millisecond after it
    edges = rows(clickhouse, queries.funnel(project, ["E1", "E2", "E3", "E4"], SINCE, UNTIL, WINDOW_S))
    assert [r[1] for r in edges] == [2, 1, 1, 1]
    assert edges[3][2] == (WINDOW_S - 20 * 60)
    assert edges == expected_funnel(events, ["E1", "E2", "E3", "E4"], WINDOW_S)
    tie = rows(clickhouse, queries.funnel(project, ["T1", "T2"], SINCE, UNTIL, WINDOW_S))
    assert tie == [(1, 1, 0.0, 0.0), (2, 1, 0.0, 0.0)]


@pytest.mark.parametrize("unit,periods,tz", [("day", 7, "UTC"), ("week", 3, "UTC"), ("day", 5, "Asia/Tokyo")])
def test_retention_cohorts(clickhouse, data, unit, periods, tz):
    project, events = data
    got = rows(clickhouse, queries.retention(project, SINCE, UNTIL, period=unit, periods=periods, tz=tz))
    assert got == expected_retention(events, unit, periods, tz)
    assert rows(clickhouse, queries.retention(project, SINCE, UNTIL, period=unit, periods=periods, tz=tz,
                                              cohort_event=STEPS[0], return_event=STEPS[3])) == \
        expected_retention(events, unit, periods, tz, STEPS[0], STEPS[3])


@pytest.mark.parametrize("what", sorted(queries.TOP))
def test_top(clickhouse, data, what):
    project, events = data
    conditions = {"pages": lambda e: e["type"] == "page",
                  "referrers": lambda e: e["type"] == "page" and e.get("referrer_source", ""),
                  "countries": lambda e: e.get("country", ""), "browsers": lambda e: e.get("browser", ""),
                  "campaigns": lambda e: e.get("utm_campaign", ""), "os": lambda e: e.get("os", ""),
                  "devices": lambda e: e.get("device", ""), "events": lambda e: e["type"] == "track",
                  "channels": lambda e: e["type"] == "page"}
    column = "channel" if what == "channels" else queries.TOP[what][0]
    seen = [{**e, "channel": CHANNELS[e.get("referrer_medium", "")]} for e in events]
    got = rows(clickhouse, queries.top(project, what, SINCE, UNTIL, limit=5))
    assert got == expected_top(seen, column, conditions[what], 5) and got


@pytest.mark.parametrize("target,depth", [("Paid", 3), ("/signup", 2), ("Checkout", 1)])
def test_paths_to_an_event(clickhouse, data, target, depth):
    project, events = data
    got = rows(clickhouse, queries.paths(project, target, SINCE, UNTIL, depth=depth, limit=8))
    assert got == expected_paths(events, target, depth, 8)
    assert got and all(path.endswith(target) for path, _ in got)


def test_session_metrics(clickhouse, data):
    project, _ = data
    db = project_database(project)
    start = T0 + timedelta(days=1)
    sessions = [("a", 1, 1, 0, True), ("a", -1, 1, 0, True), ("a", 1, 2, 300, False),  # an updated session
                ("b", 1, 1, 0, True), ("c", 1, 1, 120, False)]
    clickhouse.execute(f"INSERT INTO {db}.sessions (session_id, visitor_id, start_at, end_at, sign, version, "
                       "duration_s, is_bounce, pageviews) VALUES",
                       [(sid, sid, start, start, sign, version, duration, bounce, 1)
                        for sid, sign, version, duration, bounce in sessions])
    got = rows(clickhouse, queries.sessions(project, SINCE, UNTIL))
    assert got == [(3, pytest.approx(1 / 3), pytest.approx(140.0), pytest.approx(1.0))]


def test_empty_ranges(clickhouse, data):
    project, _ = data
    since, until = T0 - timedelta(days=30), T0 - timedelta(days=29)
    assert rows(clickhouse, queries.trends(project, since, until)) == []
    assert [r[1] for r in rows(clickhouse, queries.funnel(project, STEPS, since, until, WINDOW_S))] == [0] * 4
    assert rows(clickhouse, queries.retention(project, since, until)) == []
    assert rows(clickhouse, queries.top(project, "pages", since, until)) == []
    assert rows(clickhouse, queries.paths(project, "Paid", since, until)) == []
    assert rows(clickhouse, queries.sessions(project, since, until)) == [(0, 0, 0, 0)]


@pytest.mark.parametrize("build,message", [
    (lambda: queries.trends("p", SINCE, UNTIL, interval="year"), "interval"),
    (lambda: queries.trends("p", SINCE, UNTIL, breakdown="properties"), "breakdown"),
    (lambda: queries.trends("p", SINCE, UNTIL, tz="Mars/Olympus"), "time zone"),
    (lambda: queries.trends("p", UNTIL, SINCE), "after"),
    (lambda: queries.trends("p", SINCE.replace(tzinfo=None), UNTIL), "time zone"),
    (lambda: queries.funnel("p", ["a"], SINCE, UNTIL, 60), "two steps"),
    (lambda: queries.funnel("p", ["a", "a"], SINCE, UNTIL, 60), "distinct"),
    (lambda: queries.retention("p", SINCE, UNTIL, period="month"), "period"),
    (lambda: queries.top("p", "cities", SINCE, UNTIL), "top takes"),
    (lambda: queries.trends("Bad-Id", SINCE, UNTIL), "project id"),
])
def test_bad_queries_are_refused_with_a_reason(build, message):
    with pytest.raises(ValueError, match=message):
        build()
    assert issubclass(QueryError, ValueError)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_export_writes_the_range_once_per_event(clickhouse, data, settings, fmt):
    import json

    import pyarrow.parquet

    from analytics.export import export, export_query
    from devstack.clickhouse import user_files_dir

    project, events = data
    since, until = T0 + timedelta(days=2), T0 + timedelta(days=9)
    report = export(clickhouse, export_query(project, "events", since, until, fmt), fmt)
    written = user_files_dir(settings) / report.path
    assert Path(report.location).resolve() == written.resolve()  # the CLI prints where the file is
    if fmt == "parquet":
        ids = pyarrow.parquet.read_table(written).column("message_id").to_pylist()
    else:
        ids = [json.loads(line)["message_id"] for line in written.read_text().splitlines()]
    want = sorted(e["message_id"] for e in events if in_range(e, since, until))
    assert sorted(ids) == want and report.rows == len(want)


def test_the_cli_prints_rows_and_the_sql_it_runs(clickhouse, data):
    import json
    import subprocess
    import sys

    project, events = data
    base = [sys.executable, "-m", "headwater", "query", "top", "pages", "--project", project,
            "--from", "2026-03-02", "--to", "2026-03-23"]
    result = subprocess.run(base + ["--format", "json"], capture_output=True, text=True, check=True)
    got = [tuple(json.loads(line).values()) for line in result.stdout.splitlines()]
    assert got == expected_top(events, "url_path", lambda e: e["type"] == "page", 10)
    sql = subprocess.run(base + ["--sql"], capture_output=True, text=True, check=True).stdout
    assert f"FROM {project_database(project)}.events FINAL" in sql and "%(" not in sql
    assert clickhouse.execute(sql) == got
    bad = subprocess.run(base + ["--tz", "Nowhere/Else"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Nowhere/Else" in bad.stderr


@pytest.mark.parametrize("command", [["query", "top", "pages"], ["query", "sessions"],
                                     ["export", "--format", "jsonl"]])
def test_an_unknown_project_is_one_line_not_a_traceback(clickhouse, command):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "headwater", *command, "--project", "nosuch"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "no project 'nosuch'" in done.stderr
    assert "Traceback" not in done.stderr


def test_headwater_sql_runs_any_query(clickhouse, data):
    import subprocess
    import sys

    project, events = data
    done = subprocess.run([sys.executable, "-m", "headwater", "sql",
                           f"SELECT count() AS n FROM {project_database(project)}.events", "--format", "json"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"n": clickhouse.execute(f"SELECT count() FROM {project_database(project)}.events")[0][0]}
    bad = subprocess.run([sys.executable, "-m", "headwater", "sql", "SELEKT 1"], capture_output=True, text=True)
    assert bad.returncode == 1 and "ClickHouse refused it" in bad.stderr and "Traceback" not in bad.stderr
