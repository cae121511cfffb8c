"""The query library: each function returns the ClickHouse SQL for one analytics question.

Conventions, shared by every query (and written down for analysts in docs/queries.md):

- A **visitor** is a **person**: the event's ``anonymous_id`` (or its ``user_id`` when it has no
  anonymous id), and every other id ``identify`` and ``alias`` merged with it
  (:mod:`analytics.persons`). With ``Filters(count_ids=True)`` a visitor is the id alone.
- A range is ``[since, until)``: ``since`` included, ``until`` excluded, both aware datetimes.
- Periods (days, weeks starting on Monday, months) are taken in the query's time zone ``tz``.
- A client's retry (the same message id) counts once, even before ClickHouse has merged the duplicate
  away: counts read the events ``FINAL``; funnels and retention cannot be changed by a duplicate.
- Ids are told apart by ``visitor_hash``, a 64-bit hash of the id stored with each event, and persons
  by the hash of the person's id; that makes counting and grouping them several times faster than
  with the strings; a collision needs billions of visitors.

Each function returns a :class:`Query`: the SQL with ``%(name)s`` parameters, the parameters, and the
names of the result columns. ``headwater query … --sql`` prints it with the parameters filled in.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from analytics import persons
from analytics.channels import CHANNEL_SQL
from analytics.cohorts import Cohort, membership
from analytics.conditions import COLUMNS, PROPERTIES, ConditionError, check_key, path_args, value_sql
from analytics.filters import NONE, Filters
from analytics.goals import STEP_PREFIX, Goal
from headwater.clickhouse import project_database

INTERVALS = ("hour", "day", "week", "month")
RETENTION_PERIODS = ("day", "week")
# Columns a trend may be broken down by (or any property: ``properties.NAME``), and what ``top`` ranks.
BREAKDOWNS = COLUMNS
TOP = {
    "pages": ("url_path", "type = 'page'"),
    "events": ("event", "type = 'track'"),
    "channels": (CHANNEL_SQL, "type IN ('page', 'screen')"),
    "referrers": ("referrer_source", "type = 'page' AND referrer_source != '' AND referrer_medium != 'internal'"),
    "campaigns": ("utm_campaign", "utm_campaign != ''"),
    "countries": ("country", "country != ''"),
    "browsers": ("browser", "browser != ''"),
    "os": ("os", "os != ''"),
    "devices": ("device", "device != ''"),
}
VISITOR = "if(anonymous_id != '', anonymous_id, user_id)"
# Copies of an event share its sorting key, which starts with its day, and so its month partition:
# FINAL may then work partition by partition, in parallel.
FINAL_SETTINGS = "\nSETTINGS do_not_merge_across_partitions_select_final = 1"


class QueryError(ValueError):
    """A query that cannot be built as asked; the message says why."""


@dataclasses.dataclass(frozen=True)
class Query:
    sql: str
    params: dict
    columns: tuple[str, ...]


def _zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise QueryError(f"unknown time zone {tz!r}") from exc
    return tz


def _utc_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def time_range(since: datetime, until: datetime) -> dict:
    """``since`` and ``until`` as parameters: UTC text with milliseconds, which the SQL reads with
    ``toDateTime64(…, 3, 'UTC')`` (see :data:`SINCE` and :data:`UNTIL`)."""
    if since.tzinfo is None or until.tzinfo is None:
        raise QueryError("since and until must carry a time zone")
    if until <= since:
        raise QueryError("until must be after since")
    return {"since": _utc_ms(since), "until": _utc_ms(until)}


SINCE = "toDateTime64(%(since)s, 3, 'UTC')"
UNTIL = "toDateTime64(%(until)s, 3, 'UTC')"


def _period(unit: str, tz: str) -> str:
    column = "timestamp"
    return {
        "hour": f"toStartOfHour({column}, '{tz}')",
        "day": f"toDate({column}, '{tz}')",
        "week": f"toMonday({column}, '{tz}')",
        "month": f"toStartOfMonth({column}, '{tz}')",
    }[unit]


def _indent(sql: str, spaces: int) -> str:
    return sql.replace("\n", "\n" + " " * spaces)


def _events(project_id: str, final: bool = True) -> str:
    """The events table, read FINAL where a retry's duplicate could change the result (counts, paths);
    funnels and retention read it as it is: a copy at the same time cannot change a windowFunnel level or a set of
    periods, and reading FINAL costs the most while parts are still unmerged."""
    return f"{project_database(project_id)}.events" + (" FINAL" if final else "")


def _by_cohorts(by_cohorts: tuple[Cohort, ...], filters: Filters, params: dict) -> str:
    """The breakdown expression for ``by_cohorts`` (its parameters added to ``params``)."""
    expression, cohort_params = membership(list(by_cohorts), filters.count_ids)
    params.update(cohort_params)
    return expression


OTHER = "(other)"
BREAKDOWN_SAMPLE = 1_000_000  # events (whole visitors) that choose a breakdown's most frequent values


def _bucket(value: str) -> str:
    """A breakdown's value, or ``(other)`` when it is not one of the ``top_values`` of :func:`_breakdown`."""
    return f"if(has(top_values, {value}), {value}, %(other)s)"


def _breakdown(project_id: str, breakdown: str, limit: int, filters: Filters, params: dict) -> tuple[str, str]:
    """A breakdown by a column or a property (``properties.plan``): the ``WITH`` of its ``limit`` most
    frequent values in the range (among about ``BREAKDOWN_SAMPLE`` events of whole visitors: all of a
    smaller project's), and the value on each event (:func:`_bucket` groups the others)."""
    try:
        value, key_params = value_sql(check_key(breakdown), "by")
    except ConditionError as exc:
        raise QueryError(f"breakdown: {exc}") from exc
    if not 1 <= limit <= 1000:
        raise QueryError("breakdown_limit must be from 1 to 1000")
    params.update(key_params, breakdown_limit=limit, other=OTHER, breakdown_sample=BREAKDOWN_SAMPLE)
    top = f"""WITH (
    SELECT groupArray(value) FROM (
        SELECT {value} AS value FROM {_events(project_id, final=False)} SAMPLE %(breakdown_sample)s
        WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
        GROUP BY value ORDER BY count() DESC, value LIMIT %(breakdown_limit)s
    )
) AS top_values
"""
    return top, value


METRICS = ("count", "persons", "sessions", "sum", "avg", "median", "p90")
NUMERIC_METRICS = {"sum": "sumIf({x}, {has})", "avg": "ifNotFinite(avgIf({x}, {has}), 0)",
                   "median": "ifNotFinite(quantileExactIf(0.5)({x}, {has}), 0)",
                   "p90": "ifNotFinite(quantileExactIf(0.9)({x}, {has}), 0)"}


def _metric(metric: str, of: str | None, filters: Filters, params: dict) -> str:
    """The aggregate of a trend's ``value`` column: events (``count``), ``persons``, ``sessions``, or the
    sum, average, median or 90th percentile of the numeric property ``of`` over the events that have it
    (0 in a period where none has it)."""
    if metric not in METRICS:
        raise QueryError(f"metric must be one of {', '.join(METRICS)}")
    if metric in NUMERIC_METRICS:
        if not of or not of.startswith("properties."):
            raise QueryError(f"the {metric} metric needs a numeric property to add up: properties.NAME")
        try:
            _, key_params = value_sql(check_key(of), "of")
        except ConditionError as exc:
            raise QueryError(f"metric property: {exc}") from exc
        params.update(key_params)
        keys = path_args(of, "of")
        return NUMERIC_METRICS[metric].format(x=f"JSONExtractFloat(properties, {keys})",
                                              has=f"JSONHas(properties, {keys})")
    return {"count": "count()", "persons": f"uniqExact({persons.who(filters)})",
            "sessions": "uniqExactIf(session_id, session_id != '')"}[metric]


def _event_condition(event: str | None) -> str:
    """An event's name, or, starting with ``/``, page views of that path."""
    if not event:
        return ""
    return " AND type = 'page' AND url_path = %(event)s" if event.startswith("/") else " AND event = %(event)s"


def trends(project_id: str, since: datetime, until: datetime, event: str | None = None, interval: str = "day",
           breakdown: str | None = None, tz: str = "UTC", filters: Filters = NONE,
           by_cohorts: tuple[Cohort, ...] = (), breakdown_limit: int = 25, metric: str | None = None,
           of: str | None = None) -> Query:
    """Events and unique visitors per period (and per breakdown value, or per cohort of ``by_cohorts``
    their visitors are members of): one row per non-empty group. ``event`` is an event's name or,
    starting with ``/``, a page's path. A breakdown is a column of ``BREAKDOWNS`` or any property
    (``properties.plan``); its ``breakdown_limit`` most frequent values in the range are kept and the
    rest counted together as ``(other)``. With ``metric``, a ``value`` column more: see
    :func:`_metric` (``of`` names the property of a numeric metric)."""
    if interval not in INTERVALS:
        raise QueryError(f"interval must be one of {', '.join(INTERVALS)}")
    if breakdown and by_cohorts:
        raise QueryError("break down by a column or by cohorts, not both")
    params = {**time_range(since, until), "event": event, **filters.params()}
    top, split = "", "''"
    if by_cohorts:
        split = _by_cohorts(by_cohorts, filters, params)
    elif breakdown:
        top, value = _breakdown(project_id, breakdown, breakdown_limit, filters, params)
        split = _bucket(value)
    value = f",\n    {_metric(metric, of, filters, params)} AS value" if metric else ""
    sql = f"""{top}SELECT
    {_period(interval, _zone(tz))} AS period,
    {split} AS breakdown,
    count() AS events,
    uniqExact({persons.who(filters)}) AS visitors{value}
FROM {_events(project_id)}{persons.join(project_id, filters)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{_event_condition(event)}{filters.events_condition()}
GROUP BY period, breakdown
ORDER BY period, events DESC, breakdown{FINAL_SETTINGS}"""
    return Query(sql, params, ("period", "breakdown", "events", "visitors", *(("value",) if metric else ())))


def _step_condition(i: int, step: str | Goal, params: dict) -> str:
    """A funnel step is an event's name, a page's path (starting with ``/``), or a goal."""
    if isinstance(step, Goal):
        sql, more = step.sql(f"step{i}")
        params.update(more)
        return sql
    params[f"step{i}"] = step
    return f"(type = 'page' AND url_path = %(step{i})s)" if step.startswith("/") else f"event = %(step{i})s"


def _funnel_steps(steps: list[str], goals: tuple[Goal, ...]) -> list[str | Goal]:
    """The steps, each ``goal:NAME`` as that goal of ``goals``."""
    named = {goal.name: goal for goal in goals}
    found: list[str | Goal] = []
    for step in steps:
        if step.startswith(STEP_PREFIX):
            if step[len(STEP_PREFIX):] not in named:
                raise QueryError(f"{step[:100]!r}: the project has no such goal (it has: "
                                 f"{', '.join(named) or 'none'})")
            found.append(named[step[len(STEP_PREFIX):]])
        else:
            found.append(step)
    return found


def _steps_prefilter(steps: list[str | Goal], params: dict) -> str:
    """Only the events that can be a step: by name (the sorting key) and, for page steps, by path."""
    events = tuple(s for s in steps if isinstance(s, str) and not s.startswith("/"))
    pages = tuple(s for s in steps if isinstance(s, str) and s.startswith("/"))
    parts = []
    for i, goal in enumerate(s for s in steps if isinstance(s, Goal)):
        sql, more = goal.prefilter(f"step_goal{i}")
        parts.append(sql)
        params.update(more)
    if events:
        params["step_events"] = events
        parts.append("event IN %(step_events)s")
    if pages:
        params["step_pages"] = pages
        parts.append("(event = 'page' AND url_path IN %(step_pages)s)")
    return "(" + " OR ".join(parts) + ")"


def funnel(project_id: str, steps: list[str], since: datetime, until: datetime, window_s: int,
           filters: Filters = NONE, by_cohorts: tuple[Cohort, ...] = (), goals: tuple[Goal, ...] = (),
           breakdown: str | None = None, breakdown_limit: int = 10) -> Query:
    """An ordered funnel: how many visitors reached each step within ``window_s`` of their first step
    (``windowFunnel``, equal times count as in order), with the median and average seconds from the
    previous step on each visitor's first chain that reaches their level. Visitors enter when their
    first step happens in the range; later steps may happen after ``until`` but within the window.
    A step is an event's name or, starting with ``/``, a page view of that path, or ``goal:NAME``, one
    of ``goals`` (:mod:`analytics.goals`). With ``by_cohorts``, one funnel per cohort of its members
    (a ``cohort`` column first); with ``breakdown`` (a column or ``properties.NAME``), one funnel per
    value of it on each visitor's first step (a ``breakdown`` column first; the ``breakdown_limit`` most
    frequent values, the rest as ``(other)``)."""
    if len(steps) < 2:
        raise QueryError("a funnel needs at least two steps")
    if len(set(steps)) != len(steps):
        raise QueryError("funnel steps must be distinct events")
    if window_s <= 0:
        raise QueryError("the window must be positive")
    if breakdown and by_cohorts:
        raise QueryError("break down by a column or by cohorts, not both")
    params = {**time_range(since, until), "window_ms": window_s * 1000, **filters.params()}
    n, defined = len(steps), _funnel_steps(steps, goals)
    step_of = ("multiIf(" + ", ".join(f"{_step_condition(i, step, params)}, {i}" for i, step in enumerate(defined, 1))
               + ", 0)")
    prefilter = _steps_prefilter(defined, params)
    conditions = ", ".join(f"step = {i}" for i in range(1, n + 1))
    # Each visitor's first chain reaching their level: walk greedily from every first-step event.
    chains = ("arrayMap(i -> arrayFold((chain, e) -> if(e.2 = length(chain) + 1 AND e.1 - chain[1] <= %(window_ms)s,"
              " arrayPushBack(chain, e.1), chain), arraySlice(evs, i + 1), [evs[i].1]),"
              " arrayFilter(i -> evs[i].2 = 1 AND evs[i].1 < %(until_ms)s, arrayEnumerate(evs)))")
    params["until_ms"] = int(until.timestamp() * 1000)
    params["since_ms"] = int(since.timestamp() * 1000)
    def per_step(template: str) -> str:
        return "[" + ", ".join("0" if k == 1 else template.format(k=k) for k in range(1, n + 1)) + "]"

    reached = "[" + ", ".join(f"countIf(level >= {k})" for k in range(1, n + 1)) + "]"
    top, by, cohort, per_cohort, first_of, named = "", "", "", "", "", ""
    if by_cohorts:  # a visitor is in each of their cohorts' funnels
        by, first_of = f", {_by_cohorts(by_cohorts, filters, params)} AS cohort", "cohort, "
    elif breakdown:  # a visitor is in the funnel of the value on their first step
        top, value = _breakdown(project_id, breakdown, breakdown_limit, filters, params)
        by, first_of = f", {value} AS bv", f"{_bucket('argMinIf(bv, ts, step = 1)')} AS cohort, "
    if by:
        cohort, per_cohort = "cohort, ", "\n    GROUP BY cohort"
        named = "cohort, " if by_cohorts else "cohort AS breakdown, "
    grouped = "cohort, visitor" if by_cohorts else "visitor"
    sql = f"""{top}SELECT
    {named}step,
    reached[step] AS visitors,
    medians[step] AS median_s,
    averages[step] AS average_s
FROM (
    SELECT
        {cohort}{reached} AS reached,
        {per_step("ifNotFinite(toFloat64(medianExactIf(gaps[{k} - 1], level >= {k})), 0) / 1000")} AS medians,
        {per_step("ifNotFinite(avgIf(gaps[{k} - 1], level >= {k}), 0) / 1000")} AS averages
    FROM (
        SELECT
            {cohort}level,
            if(level < 2, [], arrayFirst(c -> length(c) = level, {chains})) AS chain,
            arrayMap(k -> toInt64(chain[k + 1]) - toInt64(chain[k]), range(1, length(chain))) AS gaps
        FROM (
            SELECT
                {first_of}who AS visitor,
                windowFunnel(%(window_ms)s)(ts, {conditions}) AS level,
                arraySort(groupArray((ts, step))) AS evs
            FROM (
                SELECT {persons.who(filters)} AS who, toUInt64(toUnixTimestamp64Milli(timestamp)) AS ts,
                    {step_of} AS step{by}
                FROM {_events(project_id, final=False)}{_indent(persons.join(project_id, filters), 16)}
                WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} + toIntervalMillisecond(%(window_ms)s)
                  AND {prefilter}{filters.events_condition()}
                  AND (step != 1 OR ts < %(until_ms)s)
            )
            GROUP BY {grouped}
            HAVING has(arrayMap(e -> e.2, evs), 1)
        )
    ){per_cohort}
)
ARRAY JOIN range(1, {n + 1}) AS step
ORDER BY {cohort}step"""
    split = ("cohort",) if by_cohorts else ("breakdown",) if breakdown else ()
    return Query(sql, params, (*split, "step", "visitors", "median_s", "average_s"))


def retention(project_id: str, since: datetime, until: datetime, period: str = "week", periods: int = 8,
              cohort_event: str | None = None, return_event: str | None = None, tz: str = "UTC",
              filters: Filters = NONE, by_cohorts: tuple[Cohort, ...] = (), breakdown: str | None = None,
              breakdown_limit: int = 10) -> Query:
    """Cohorts by the period of each visitor's first ``cohort_event`` (any event when ``None``) in the
    range; for each, the cohort's size and how many of its visitors did ``return_event`` (any event)
    ``k`` periods later, for k = 0 … ``periods``, within the range. With ``by_cohorts``, one grid per
    saved cohort of its members (a ``segment`` column first: ``cohort`` is the period's); with
    ``breakdown`` (a column or ``properties.NAME``), one grid per value of it on each visitor's first
    cohort event (in ``segment``; the ``breakdown_limit`` most frequent values, the rest ``(other)``)."""
    if period not in RETENTION_PERIODS:
        raise QueryError(f"period must be one of {', '.join(RETENTION_PERIODS)}")
    if not 1 <= periods <= 366:
        raise QueryError("periods must be between 1 and 366")
    params = {**time_range(since, until), "periods": periods, "cohort_event": cohort_event,
              "return_event": return_event, **filters.params()}
    is_cohort = "event = %(cohort_event)s" if cohort_event else "1"
    is_return = "event = %(return_event)s" if return_event else "1"
    if breakdown and by_cohorts:
        raise QueryError("break down by a column or by cohorts, not both")
    top, by, segment, grouped = "", "", "", "visitor"
    if by_cohorts:  # a visitor is in each of their cohorts' grids
        by, segment, grouped = f"{_by_cohorts(by_cohorts, filters, params)} AS segment,\n                ", \
            "segment, ", "segment, visitor"
    elif breakdown:  # a visitor is in the grid of the value on their first cohort event
        top, value = _breakdown(project_id, breakdown, breakdown_limit, filters, params)
        by, segment = f"{_bucket(f'argMinIf({value}, timestamp, {is_cohort})')} AS segment,\n                ", \
            "segment, "
    sql = f"""{top}SELECT {segment}cohort, size AS cohort_size, greatest(k, 0) AS periods_later, if(k < 0, 0, n) AS visitors
FROM (
    SELECT {segment}cohort, k, n,
        max(if(k = -1, n, 0)) OVER (PARTITION BY {segment}cohort) AS size,
        count() OVER (PARTITION BY {segment}cohort) AS rows_in_cohort
    FROM (
        -- k = -1 counts the cohort itself; k >= 0 counts returns k periods after the cohort's
        SELECT {segment}cohort, k, count() AS n
        FROM (
            SELECT
                {by}{persons.who(filters)} AS visitor,
                minIf({_period(period, _zone(tz))}, {is_cohort}) AS cohort,
                groupUniqArrayIf({_period(period, tz)}, {is_return}) AS returns
            FROM {_events(project_id, final=False)}{_indent(persons.join(project_id, filters), 12)}
            WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
            GROUP BY {grouped}
            HAVING countIf({is_cohort}) > 0
        )
        ARRAY JOIN arrayPushFront(arrayFilter(d -> d BETWEEN 0 AND %(periods)s,
            arrayMap(r -> dateDiff('{period}', cohort, r), returns)), -1) AS k
        GROUP BY {segment}cohort, k
    )
)
WHERE k >= 0 OR rows_in_cohort = 1
ORDER BY {segment}cohort, periods_later"""
    return Query(sql, params, (*(("segment",) if by_cohorts or breakdown else ()), "cohort", "cohort_size",
                               "periods_later", "visitors"))


def top(project_id: str, what: str, since: datetime, until: datetime, limit: int = 10,
        filters: Filters = NONE) -> Query:
    """The most visited pages (by path), referrers (by source), UTM campaigns, countries, browsers,
    operating systems or devices: visitors and events for each value."""
    if what not in TOP:
        raise QueryError(f"top takes one of {', '.join(TOP)}")
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    column, condition = TOP[what]
    sql = f"""SELECT
    {column} AS value,
    uniqExact({persons.who(filters)}) AS visitors,
    count() AS events
FROM {_events(project_id)}{persons.join(project_id, filters)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND {condition}{filters.events_condition()}
GROUP BY value
ORDER BY visitors DESC, events DESC, value
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), "limit": limit, **filters.params()}, ("value", "visitors", "events"))


def breakdown(project_id: str, by: str, since: datetime, until: datetime, limit: int = 10,
              filters: Filters = NONE) -> Query:
    """Visitors and events per value of a column or a property (``properties.plan``) in the range: its
    ``limit`` most frequent values (chosen as for :func:`trends`), the rest together as ``(other)``,
    which comes last; the others most visitors first."""
    params = {**time_range(since, until), **filters.params()}
    top, value = _breakdown(project_id, by, limit, filters, params)
    sql = f"""{top}SELECT
    {_bucket(value)} AS value,
    uniqExact({persons.who(filters)}) AS visitors,
    count() AS events
FROM {_events(project_id)}{persons.join(project_id, filters)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
GROUP BY value
ORDER BY value = %(other)s, visitors DESC, events DESC, value{FINAL_SETTINGS}"""
    return Query(sql, params, ("value", "visitors", "events"))


def _first_values(project_id: str, key: str, value: str) -> str:
    """Each session's ``value`` on its first event in the range (``session_id``, ``first_value``). A
    property is read from the first event's properties alone: taking the first of every event's value
    would parse the properties of every event."""
    first = f"""
    FROM {_events(project_id, final=False)}
    WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND session_id != ''
    GROUP BY session_id"""
    if key.startswith(PROPERTIES):
        return f"""
    SELECT session_id, {value} AS first_value
    FROM (SELECT session_id, argMin(properties, timestamp) AS properties{_indent(first, 4)})
"""
    return f"""
    SELECT session_id, argMin({value}, timestamp) AS first_value{first}
"""


def sessions_by(project_id: str, by: str, since: datetime, until: datetime, limit: int = 10,
                filters: Filters = NONE) -> Query:
    """The figures of :func:`sessions` per value of a column or a property on each session's first
    event: the ``limit`` most frequent values among the range's events, the rest together as
    ``(other)`` (last). A session's first event is in the range whenever the session started in it,
    so the range's events name every counted session's value."""
    params = {**time_range(since, until), **filters.params()}
    top, value = _breakdown(project_id, by, limit, filters, params)
    database = project_database(project_id)
    sql = f"""{top}SELECT
    {_bucket("first_value")} AS value,
    sum(sign) AS sessions,
    if(sessions = 0, 0, sum(sign * is_bounce) / sessions) AS bounce_rate,
    if(sessions = 0, 0, sum(sign * duration_s) / sessions) AS average_duration_s,
    if(sessions = 0, 0, sum(sign * pageviews) / sessions) AS pageviews_per_session
FROM {database}.sessions
INNER JOIN ({_first_values(project_id, by, value)}) AS firsts USING session_id
WHERE start_at >= {SINCE} AND start_at < {UNTIL}{filters.sessions_condition(project_id, SINCE, UNTIL)}
GROUP BY value
HAVING sessions > 0
ORDER BY value = %(other)s, sessions DESC, value"""
    return Query(sql, params, ("value", "sessions", "bounce_rate", "average_duration_s", "pageviews_per_session"))


def sessions(project_id: str, since: datetime, until: datetime, filters: Filters = NONE) -> Query:
    """Sessions that started in the range: count, bounce rate (sessions of one event) and average
    duration in seconds. The sessions table collapses updates by ``sign``: see docs/schema.md."""
    sql = f"""SELECT
    sum(sign) AS sessions,
    if(sessions = 0, 0, sum(sign * is_bounce) / sessions) AS bounce_rate,
    if(sessions = 0, 0, sum(sign * duration_s) / sessions) AS average_duration_s,
    if(sessions = 0, 0, sum(sign * pageviews) / sessions) AS pageviews_per_session
FROM {project_database(project_id)}.sessions
WHERE start_at >= {SINCE} AND start_at < {UNTIL}{filters.sessions_condition(project_id, SINCE, UNTIL)}"""
    return Query(sql, {**time_range(since, until), **filters.params()},
                 ("sessions", "bounce_rate", "average_duration_s", "pageviews_per_session"))


def new_sessions(project_id: str, since: datetime, until: datetime, filters: Filters = NONE) -> Query:
    """Sessions that started in the range and were their visitor's first ever (a person's first of all
    its ids' sessions, unlike the table's ``is_new_visitor``, which is the id's), and the others. The
    filters apply to the earlier sessions too: with ``country`` set, "first" means first there."""
    sql = f"""SELECT countIf(start_at = first_start) AS new, count() - new AS returning
FROM (
    SELECT start_at, min(start_at) OVER (PARTITION BY {persons.who(filters)}) AS first_start
    FROM {project_database(project_id)}.sessions FINAL{persons.join(project_id, filters)}
    WHERE sign = 1 AND start_at < {UNTIL}{filters.sessions_condition(project_id, "toDateTime64(0, 3, 'UTC')", UNTIL)}
)
WHERE start_at >= {SINCE}"""
    return Query(sql, {**time_range(since, until), **filters.params()}, ("new", "returning"))


def paths(project_id: str, target: str, since: datetime, until: datetime, depth: int = 3, limit: int = 10,
          filters: Filters = NONE) -> Query:
    """The most common paths to ``target``: the ``depth`` steps before each session's first ``target``
    event (a page is named by its path, other events by their name), counted per session. Events
    without a session are grouped by visitor."""
    if not 1 <= depth <= 20:
        raise QueryError("depth must be between 1 and 20")
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    sql = f"""SELECT
    arrayStringConcat(arraySlice(labels, greatest(1, at - %(depth)s), at - greatest(1, at - %(depth)s) + 1), ' → ') AS path,
    count() AS sessions
FROM (
    SELECT
        arrayMap(e -> e.3, arraySort(e -> (e.1, e.2), groupArray((timestamp, message_id, label)))) AS labels,
        indexOf(labels, %(target)s) AS at
    FROM (
        SELECT timestamp, message_id, if(session_id != '', session_id, {VISITOR}) AS sequence,
               if(type = 'page', url_path, event) AS label
        FROM {_events(project_id)}
        WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
    )
    GROUP BY sequence
    HAVING at > 0
)
GROUP BY path
ORDER BY sessions DESC, path
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), "target": target, "depth": depth, "limit": limit,
                       **filters.params()}, ("path", "sessions"))


CATALOGUE_PROPERTIES = 100  # (property, type) pairs listed for one event
CATALOGUE_ROWS = 10_000


def catalogue(project_id: str, since: datetime, until: datetime) -> Query:
    """The event catalogue for the days of the range (``since``'s day to ``until``'s, both included):
    each event name and call type (``property`` empty) and each of its properties with the JSON type it
    was seen with, the events that carried it, and when it was first and last seen. Read from
    ``event_catalogue``, which ClickHouse keeps as events are inserted: never a scan of ``events``.
    Counts include a client's retries that ClickHouse has not merged away yet. At most
    ``CATALOGUE_PROPERTIES`` properties an event (the most used) and ``CATALOGUE_ROWS`` rows in all, so
    that a sender who invents a property name per event cannot make the answer as large as its events."""
    sql = f"""SELECT
    event, type, property, value_type,
    sum(events) AS events,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM {project_database(project_id)}.event_catalogue
WHERE day >= toDate({SINCE}) AND day <= toDate({UNTIL})
GROUP BY event, type, property, value_type
ORDER BY event, type, property != '', events DESC, property, value_type
LIMIT {CATALOGUE_PROPERTIES + 1} BY event, type
LIMIT {CATALOGUE_ROWS}"""
    return Query(sql, time_range(since, until),
                 ("event", "type", "property", "value_type", "events", "first_seen", "last_seen"))
