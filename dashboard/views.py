"""What each page asks the query library, and how the answers become what the page shows.

``QUERIES[view](project_id, state)`` names every query a page runs; the page's template gets the
rows under the same names, shaped by the view's ``shape`` function. The "SQL" link of each block
rebuilds the same query from the same URL state, so what it shows is exactly what the block ran.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from analytics import activity, discovery, overview, people, queries, revenue
from analytics.queries import Query
from dashboard.state import ViewState
from headwater.destinations import destination_group
from headwater.flow import DEFAULT_FLOW, INDEX_STEP, PROCESSOR_STEPS, parse_flow
from headwater.routing import step_kind
from headwater.topics import EVENTS_INDEXER_GROUP, MEDIATOR_GROUP, processor_group

TOP_BLOCKS = {  # block -> (title, what the query library ranks, the filter a row sets, or None)
    "pages": ("Top pages", "pages", "page"),
    "entry_pages": ("Entry pages", "entry", "page"),
    "exit_pages": ("Exit pages", "exit", "page"),
    "channels": ("Channels", "channels", "channel"),
    "referrers": ("Referrers", "referrers", None),
    "campaigns": ("UTM campaigns", "campaigns", "utm_campaign"),
    "countries": ("Countries", "countries", "country"),
    "browsers": ("Browsers", "browsers", None),
    "os": ("Operating systems", "os", None),
    "devices": ("Devices", "devices", "device"),
}

TOP_LIMIT = 10


def overview_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    f = state.filters
    out = {
        "traffic": overview.traffic(project_id, since, until, f),
        "engagement": overview.engagement(project_id, since, until, f),
        "trend": queries.trends(project_id, since, until, interval=state.trend_interval(), tz=state.tz, filters=f,
                                by_cohorts=state.breakdown),
    }
    for block, (_title, what, _filter) in TOP_BLOCKS.items():
        out[block] = overview.top_list(project_id, what, since, until, TOP_LIMIT, f)
    if state.goals:
        out["goals"] = overview.goals(project_id, state.goals, since, until, f)
    if state.split:
        out["breakdown"] = queries.breakdown(project_id, state.split, since, until, TOP_LIMIT, f)
    return out


def funnel_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    out = {"events": queries.top(project_id, "events", since, until, 20, state.filters)}
    if len(state.steps) >= 2 and len(set(state.steps)) == len(state.steps):
        out["funnel"] = queries.funnel(project_id, list(state.steps), since, until, int(state.window), state.filters,
                                       state.breakdown, state.goals, state.split or None)
    return out


def retention_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    return {"retention": queries.retention(project_id, since, until, state.period, state.periods, tz=state.tz,
                                           filters=state.filters, by_cohorts=state.breakdown,
                                           breakdown=state.split or None)}


def live_window(minutes: int) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    return now - timedelta(minutes=minutes), now + timedelta(minutes=1)


def live_queries(project_id: str, state: ViewState, minutes: int = 30) -> dict[str, Query]:
    since, until = live_window(minutes)
    return {"latest": activity.latest_events(project_id, since, until, 100, state.filters),
            "traffic": overview.traffic(project_id, since, until, state.filters)}


def sessions_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    return {"sessions": activity.recent_sessions(project_id, since, until, 50, state.filters),
            "summary": queries.sessions(project_id, since, until, state.filters),
            "new": queries.new_sessions(project_id, since, until, state.filters),
            **({"by": queries.sessions_by(project_id, state.split, since, until, TOP_LIMIT, state.filters)}
               if state.split else {})}


def people_queries(project_id: str, state: ViewState, search: str = "") -> dict[str, Query]:
    since, until = state.bounds()
    return {"people": people.people(project_id, since, until, search, 100, state.filters)}


def alerts_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    return {"recent": activity.recent_alerts(project_id, since, until, 100),
            "by_rule": activity.alerts_by_rule(project_id, since, until)}


def rule_rows(raw: dict, counts: list[dict]) -> list[dict]:
    """Each rule of a project's ``alerts`` setting as the Alerts page lists it: its kind, what makes it
    fire (its settings other than name and kind, as JSON), and its alerts in the range."""
    by_rule = {row["rule"]: row for row in counts}
    rows = []
    for rule in raw.get("rules", []) if isinstance(raw, dict) else []:
        if not isinstance(rule, dict):
            continue
        name = str(rule.get("name", ""))
        summary = {k: v for k, v in rule.items() if k not in ("name", "kind", "cooldown_s")}
        counted = by_rule.get(name, {})
        rows.append({"name": name, "kind": rule.get("kind", ""), "cooldown_s": rule.get("cooldown_s", 0),
                     "summary": json.dumps(summary, sort_keys=True), "alerts": counted.get("alerts", 0),
                     "last_at": counted.get("last_at")})
    return rows


def failed_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = state.bounds()
    return {"reasons": activity.failure_reasons(project_id, since, until),
            "samples": activity.failure_samples(project_id, since, until, 3)}


FLOW_MINUTES = 60  # the Flow page's figures: events a minute over the last hour


def flow_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = live_window(FLOW_MINUTES)
    return {"step_counts": activity.step_counts(project_id, since, until),
            "dead_letters": activity.dead_letters_by_step(project_id, since, until),
            "stored": activity.stored(project_id, since, until),
            "catalogue": queries.catalogue(project_id, *state.bounds())}


def destinations_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    since, until = live_window(FLOW_MINUTES)
    return {"step_counts": activity.step_counts(project_id, since, until),
            "dead_letters": activity.dead_letters_by_step(project_id, since, until)}


def _split(state: ViewState) -> str:
    """The Trends page's breakdown: it applies to a single series."""
    return state.split if len(state.series) <= 1 else ""


def trends_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    """One query per series (``series0`` …; every event when none is chosen), and with ``compare`` the
    same over the period of the same length before (``previous0`` …). A breakdown applies to a single
    series."""
    since, until = state.bounds()
    span = until - since
    split = _split(state)
    out = {}
    for i, event in enumerate(state.series or ("",)):
        def query(start: datetime, end: datetime, event: str = event) -> Query:
            return queries.trends(project_id, start, end, event or None, state.trend_interval(), split or None,
                                  state.tz, state.filters, metric=state.metric, of=state.of or None)
        out[f"series{i}"] = query(since, until)
        if state.compare:
            out[f"previous{i}"] = query(since - span, since)
    return out


def trend_lines(rows: dict[str, list[dict]], state: ViewState) -> dict:
    """The Trends page's chart and table: one line per series (per breakdown value, with one series
    broken down), and with ``compare`` each series' previous period moved forward onto this one; the
    x axis is the periods' start times (seconds), each line's values the ``value`` of each period (0
    where it had no events)."""
    since, until = state.bounds()
    shift = int((until - since).total_seconds())
    lines: dict[str, dict[int, float]] = {}
    for i, event in enumerate(state.series or ("",)):
        label = event or "every event"
        for name, moved, suffix in ((f"series{i}", 0, ""), (f"previous{i}", shift, " (previous period)")):
            for row in rows.get(name, []):
                key = label + (f" · {row['breakdown']}" if _split(state) else "") + suffix
                lines.setdefault(key, {})[_epoch(row["period"]) + moved] = row["value"]
    return _lines(lines, since, until, state)


def _lines(lines: dict[str, dict[int, float]], since: datetime, until: datetime, state: ViewState) -> dict:
    """A chart's data from each line's value per period start (seconds): every period of the range on
    the x axis (a day, week or month without a value is 0), each line's values in that order."""
    x = sorted({t for values in lines.values() for t in values} | set(period_starts(state)))
    return {"x": x, "from": int(since.timestamp()), "to": int(until.timestamp()),
            "cohorts": [{"name": name, "visitors": [values.get(t, 0) for t in x]} for name, values in lines.items()]}


def period_starts(state: ViewState) -> list[int]:
    """The start of every day, week or month of the range, as the queries name them (a date, read as
    UTC midnight); none for hours, whose starts the rows give."""
    interval = state.trend_interval()
    if interval == "hour":
        return []
    since, until = state.bounds()
    day, last = since.astimezone(state.zone).date(), (until - timedelta(microseconds=1)).astimezone(state.zone).date()
    if interval == "week":
        day -= timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    starts = []
    while day <= last:
        starts.append(_epoch(day))
        day = (day + timedelta(days=7 if interval == "week" else 1) if interval != "month"
               else (day.replace(day=28) + timedelta(days=4)).replace(day=1))
    return starts


REVENUE_BLOCKS = {"channels": "Revenue by channel", "campaigns": "Revenue by campaign",
                  "referrers": "Revenue by referrer"}


def revenue_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    """Revenue per period and currency, by the sessions' channel, campaign and referrer, and by product."""
    since, until = state.bounds()
    out = {"over_time": revenue.over_time(project_id, since, until, state.trend_interval(), state.tz, state.filters),
           "products": revenue.products(project_id, since, until, TOP_LIMIT, state.filters)}
    for what in REVENUE_BLOCKS:
        out[what] = revenue.by_source(project_id, what, since, until, TOP_LIMIT, state.filters)
    return out


def revenue_lines(rows: list[dict], state: ViewState) -> dict:
    """The Revenue page's chart: one line per currency (``(no currency)`` for orders without one)."""
    lines: dict[str, dict[int, float]] = {}
    for row in rows:
        lines.setdefault(row["currency"] or "(no currency)", {})[_epoch(row["period"])] = row["revenue"]
    return _lines(lines, *state.bounds(), state)


CHART_BLOCKS = {"overview": "trend", "trends": "", "revenue": "over_time"}  # "": every block of the view


def chart(view: str, rows: dict[str, list[dict]], state: ViewState) -> dict | None:
    """The data of the chart a view draws, from its rows (``None``: the view has no chart, or its
    chart's block is not among ``rows``): the period starts (``x``, seconds), the range (``from``,
    ``to``) and the lines (see :func:`trend_series` and :func:`trend_lines`). The pages' script gets it
    from the Stats API, which answers it beside the blocks."""
    block = CHART_BLOCKS.get(view)
    if block is None or (block and block not in rows) or not rows:
        return None
    if view == "overview":
        return trend_series(rows["trend"], *state.bounds(), tuple(c.name for c in state.breakdown))
    if view == "revenue":
        return revenue_lines(rows["over_time"], state)
    return trend_lines(rows, state)


def discover_queries(project_id: str, state: ViewState) -> dict[str, Query]:
    """The Discover page's first queries (``mining``, ``drivers``, ``paths``); the ``recount`` that
    counts the mined funnels exactly is built from mining's rows (:func:`discover_recount`)."""
    since, until = state.bounds()
    return discovery.first_queries(project_id, since, until, state.filters, state.target or None,
                                   state.path or None, state.direction)


async def discover_recount(records, project_id: str, state: ViewState) -> Query | None:
    """The exact count of the funnels mining finds for ``state``, as the page ran it (``None``: none)."""
    since, until = state.bounds()
    *_, recount = await discovery.mine(records, discover_queries(project_id, state)["mining"], project_id, since,
                                       until, state.filters, state.target or None)
    return recount


QUERIES = {"overview": overview_queries, "funnels": funnel_queries, "retention": retention_queries,
           "live": live_queries, "sessions": sessions_queries, "people": people_queries, "failed": failed_queries,
           "alerts": alerts_queries, "discover": discover_queries, "trends": trends_queries,
           "revenue": revenue_queries,
           "flow": flow_queries, "destinations": destinations_queries}

MEDIATOR = "mediator"
STEP_GROUPS = {**{step: processor_group(step) for step in PROCESSOR_STEPS}, INDEX_STEP: EVENTS_INDEXER_GROUP,
               MEDIATOR: MEDIATOR_GROUP}
COUNTED = ("events_in", "events_out", "dropped", "dead_lettered")


def flow_steps(flow: list | None, counts: list[dict], dead_letters: list[dict], stored: list[dict],
               lags: dict[str, int] | None) -> list[dict]:
    """The project's flow as the Flow page draws it: the mediator, then each step with what it does
    and its condition. For each, its events a minute over the last hour as the processes running it
    counted them (``per_min``: in, out, dropped, dead-lettered), or, for ``index``, the events stored
    and the dead letters of inserts ClickHouse refused; and the lag of the consumer group that runs it
    (every project's records; ``None``: not measured)."""
    parsed = parse_flow(flow)
    entries = list(DEFAULT_FLOW) if flow is None else flow
    counted = {row["step"]: row for row in counts}
    steps = [_step(MEDIATOR, None, "routes each event by the conditions below", counted, lags)]
    for slip_name, entry in zip(parsed.steps, entries):
        spec = parsed.transforms.get(slip_name)
        does = "" if spec is None else f"python: {spec.python}" if spec.python else \
            f"{len(entry['do'])} operation{'s' if len(entry['do']) != 1 else ''}, version {spec.version}"
        steps.append(_step(slip_name, entry.get("when") if isinstance(entry, dict) else None, does, counted, lags))
    for index in (s for s in steps if s["name"] == INDEX_STEP):
        index["per_min"] = None
        index["stored_per_min"] = (stored[0]["events"] if stored else 0) / FLOW_MINUTES
        index["dead_per_min"] = sum(r["events"] for r in dead_letters if r["step"] == INDEX_STEP) / FLOW_MINUTES
    return steps


def _step(name: str, when: dict | None, does: str, counted: dict[str, dict], lags: dict[str, int] | None) -> dict:
    row = counted.get(name, {})
    return {"name": name, "when": when, "does": does,
            "per_min": {field: row.get(field, 0) / FLOW_MINUTES for field in COUNTED},
            "stored_per_min": None, "dead_per_min": None,
            "lag": None if lags is None else lags.get(STEP_GROUPS[step_kind(name)], 0)}


def destination_rows(project_id: str, destinations: list[dict], counts: list[dict], statuses: dict[str, list],
                     lags: dict[str, int] | None) -> list[dict]:
    """Each destination as the Destinations page shows it: its definition (secrets only as set), its
    events a minute over the last hour as the forwarder counted them (in: the project's events it read;
    delivered; not selected by its condition or transformation; dead-lettered), its consumer group's lag,
    and what the forwarders running it last said (failing, retried, the last error)."""
    counted = {row["step"]: row for row in counts}
    rows = []
    for entry in destinations:
        name = entry.get("name", "")
        row = counted.get(f"forward:{name}", {})
        said = statuses.get(name, [])
        errors = sorted((s for s in said if s.last_error), key=lambda s: -s.last_error_at_ms)
        rows.append({
            "name": name, "type": entry.get("type"), "settings": entry.get("settings", {}), "when": entry.get("when"),
            "paused": bool(entry.get("paused")),
            "per_min": {"events_in": row.get("events_in", 0) / FLOW_MINUTES,
                        "delivered": row.get("events_out", 0) / FLOW_MINUTES,
                        "not_selected": row.get("dropped", 0) / FLOW_MINUTES,
                        "dead_lettered": row.get("dead_lettered", 0) / FLOW_MINUTES},
            "lag": None if lags is None else lags.get(destination_group(project_id, name)),
            "failing": any(s.failing for s in said), "retried": sum(s.retried for s in said),
            "last_error": errors[0].last_error if errors else "",
            "last_error_at": errors[0].last_error_at_ms if errors else 0,
        })
    return rows


def change(current: float, previous: float) -> float | None:
    """The relative change from the previous period, or ``None`` when there is nothing to compare to."""
    return None if not previous else (current - previous) / previous


def _by_period(rows: list[dict]) -> tuple[dict, dict]:
    current = next((r for r in rows if r["current"]), {})
    previous = next((r for r in rows if not r["current"]), {})
    return current, previous


def headline(traffic: list[dict], engagement: list[dict]) -> list[dict]:
    """The overview's five figures with the previous period's and the change."""
    now, before = _by_period(traffic)
    now_s, before_s = _by_period(engagement)
    figures = [("visitors", "Visitors", now, before, "count"), ("pageviews", "Pageviews", now, before, "count"),
               ("sessions", "Sessions", now_s, before_s, "count"),
               ("bounce_rate", "Bounce rate", now_s, before_s, "percent"),
               ("average_duration_s", "Avg. session", now_s, before_s, "duration")]
    return [{"key": key, "label": label, "value": cur.get(key, 0), "previous": prev.get(key, 0),
             "change": change(cur.get(key, 0), prev.get(key, 0)), "format": kind}
            for key, label, cur, prev, kind in figures]


def trend_series(rows: list[dict], since: datetime, until: datetime, cohorts: tuple[str, ...] = ()) -> dict:
    """The trend chart's data: period start times (seconds), the range the x axis spans (seconds), and
    the events and visitors of each period; or, given ``cohorts`` (the trend broken down by them), the
    visitors of each cohort in each period (0 where none of its members came)."""
    span = {"from": int(since.timestamp()), "to": int(until.timestamp())}
    if not cohorts:
        return {"x": [_epoch(r["period"]) for r in rows], "events": [r["events"] for r in rows],
                "visitors": [r["visitors"] for r in rows], **span}
    x = sorted({_epoch(r["period"]) for r in rows})
    at = {t: i for i, t in enumerate(x)}
    series = {name: [0] * len(x) for name in cohorts}
    for row in rows:
        if row["breakdown"] in series:
            series[row["breakdown"]][at[_epoch(row["period"])]] = row["visitors"]
    return {"x": x, "cohorts": [{"name": name, "visitors": values} for name, values in series.items()], **span}


def _epoch(value) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())


def funnel_steps(rows: list[dict]) -> list[dict]:
    """Each step with its conversion from the first step and its drop-off from the step before."""
    first = rows[0]["visitors"] if rows else 0
    out, previous = [], None
    for row in rows:
        visitors = row["visitors"]
        out.append({**row, "conversion": visitors / first if first else 0.0,
                    "dropped": 0 if previous is None else previous - visitors,
                    "drop_rate": 0.0 if not previous else (previous - visitors) / previous})
        previous = visitors
    return out


def cohort_grid(rows: list[dict], periods: int, period: str, last_day: date) -> list[dict]:
    """Retention rows as a grid: one row per cohort, with the share of it back ``k`` periods later.
    Periods that start after ``last_day`` (the range's last day) have not happened yet: ``None``."""
    step = timedelta(days=7 if period == "week" else 1)
    cohorts: dict = {}
    for row in rows:
        start, size = row["cohort"], row["cohort_size"]
        if start not in cohorts:
            cells = [{"visitors": 0, "share": 0.0} if start + k * step <= last_day else None
                     for k in range(periods + 1)]
            cohorts[start] = {"cohort": start, "size": size, "cells": cells}
        k = row["periods_later"]
        if 0 <= k <= periods and cohorts[start]["cells"][k] is not None:
            cohorts[start]["cells"][k] = {"visitors": row["visitors"], "share": row["visitors"] / size if size else 0.0}
    return list(cohorts.values())
