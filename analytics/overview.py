"""The overview's queries: headline figures against the previous period, and what visitors came for.

Each returns a :class:`~analytics.queries.Query`, like the rest of the library (docs/queries.md).
The previous period is the range of the same length just before ``since``; both periods are read in
one pass.
"""

from __future__ import annotations

from datetime import datetime

from analytics import persons, queries
from analytics.channels import CHANNEL_SQL
from analytics.filters import NONE, Filters
from analytics.goals import Goal
from analytics.queries import FINAL_SETTINGS, SINCE, UNTIL, Query, QueryError, _events, _utc_ms, time_range
from analytics.revenue import AMOUNT, CURRENCY, HAS_REVENUE
from headwater.clickhouse import project_database

PREVIOUS = "toDateTime64(%(previous)s, 3, 'UTC')"
SESSION_PAGES = {"entry": "entry_page", "exit": "exit_page"}
# What brought visitors, and with what, by their sessions' first events (as Plausible counts them).
SOURCES = {"channels": CHANNEL_SQL, "referrers": "referrer_source", "campaigns": "utm_campaign", "countries": "country",
           "browsers": "browser", "os": "os", "devices": "device"}


def _with_previous(since: datetime, until: datetime) -> dict:
    return {**time_range(since, until), "previous": _utc_ms(since - (until - since))}


def traffic(project_id: str, since: datetime, until: datetime, filters: Filters = NONE) -> Query:
    """Unique visitors, page views (page and screen calls) and events, for the range (``current`` = 1)
    and for the period before it (``current`` = 0); a period without events has no row."""
    sql = f"""SELECT
    timestamp >= {SINCE} AS current,
    uniqExact({persons.who(filters)}) AS visitors,
    countIf(type IN ('page', 'screen')) AS pageviews,
    count() AS events
FROM {_events(project_id)}{persons.join(project_id, filters)}
WHERE timestamp >= {PREVIOUS} AND timestamp < {UNTIL}{filters.events_condition()}
GROUP BY current
ORDER BY current{FINAL_SETTINGS}"""
    return Query(sql, {**_with_previous(since, until), **filters.params()},
                 ("current", "visitors", "pageviews", "events"))


def engagement(project_id: str, since: datetime, until: datetime, filters: Filters = NONE) -> Query:
    """Sessions that started in the range (``current`` = 1) and in the period before it (0): their
    number, bounce rate (the share of one-event sessions) and average duration in seconds."""
    sql = f"""SELECT
    start_at >= {SINCE} AS current,
    sum(sign) AS sessions,
    if(sessions = 0, 0, sum(sign * is_bounce) / sessions) AS bounce_rate,
    if(sessions = 0, 0, sum(sign * duration_s) / sessions) AS average_duration_s
FROM {project_database(project_id)}.sessions
WHERE start_at >= {PREVIOUS} AND start_at < {UNTIL}{filters.sessions_condition(project_id, PREVIOUS, UNTIL)}
GROUP BY current
HAVING sessions > 0
ORDER BY current"""
    return Query(sql, {**_with_previous(since, until), **filters.params()},
                 ("current", "sessions", "bounce_rate", "average_duration_s"))


def session_pages(project_id: str, which: str, since: datetime, until: datetime, limit: int = 10,
                  filters: Filters = NONE) -> Query:
    """The most common entry (first) or exit (last) pages of the sessions that started in the range."""
    if which not in SESSION_PAGES:
        raise QueryError(f"which must be one of {', '.join(SESSION_PAGES)}")
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    column = SESSION_PAGES[which]
    sql = f"""SELECT {column} AS value, sum(sign) AS sessions
FROM {project_database(project_id)}.sessions
WHERE start_at >= {SINCE} AND start_at < {UNTIL} AND {column} != ''{filters.sessions_condition(project_id, SINCE, UNTIL)}
GROUP BY value
HAVING sessions > 0
ORDER BY sessions DESC, value
LIMIT %(limit)s"""
    return Query(sql, {**time_range(since, until), "limit": limit, **filters.params()}, ("value", "sessions"))


def sources(project_id: str, what: str, since: datetime, until: datetime, limit: int = 10,
            filters: Filters = NONE) -> Query:
    """Visitors and sessions by referrer source, UTM campaign, country, browser, OS or device, for the
    sessions that started in the range, each by its first event. A visitor whose sessions differ (two
    countries) counts once under each. Reads the ``sessions`` table, a tenth of the events' rows."""
    if what not in SOURCES:
        raise QueryError(f"sources takes one of {', '.join(SOURCES)}")
    if not 1 <= limit <= 10_000:
        raise QueryError("limit must be between 1 and 10000")
    column = SOURCES[what]
    external = " AND referrer_medium != 'internal'" if what == "referrers" else ""  # the site is no referrer
    sql = f"""SELECT {column} AS value, uniqExactIf({persons.who(filters)}, sign = 1) AS visitors, sum(sign) AS sessions
FROM {project_database(project_id)}.sessions{persons.join(project_id, filters)}
WHERE start_at >= {SINCE} AND start_at < {UNTIL} AND {column} != ''{external}{filters.sessions_condition(project_id, SINCE, UNTIL)}
GROUP BY value
HAVING sessions > 0
ORDER BY visitors DESC, sessions DESC, value
LIMIT %(limit)s"""
    return Query(sql, {**time_range(since, until), "limit": limit, **filters.params()},
                 ("value", "visitors", "sessions"))


def top_list(project_id: str, what: str, since: datetime, until: datetime, limit: int = 10,
             filters: Filters = NONE) -> Query:
    """One of the overview's lists: ``pages`` from the events; ``entry`` and ``exit`` pages and the
    :data:`SOURCES` from the sessions."""
    if what in SESSION_PAGES:
        return session_pages(project_id, what, since, until, limit, filters)
    if what in SOURCES:
        return sources(project_id, what, since, until, limit, filters)
    return queries.top(project_id, what, since, until, limit, filters)


def goals(project_id: str, goals: tuple[Goal, ...], since: datetime, until: datetime,
          filters: Filters = NONE) -> Query:
    """Per goal, in one pass over the range: ``visitors`` who converted, ``conversion_rate`` (of all the
    visitors in the range, filters applied), ``conversions`` (goal events), ``value`` (the sum of their
    ``revenue``; 0 for a page goal) and ``currencies`` (the currencies of that revenue,
    comma-separated: a value over several is a sum of different units, which the dashboard does not
    show)."""
    if not goals:
        raise QueryError("the project has no goals")
    params = {**time_range(since, until), **filters.params(), "goal_names": [g.name for g in goals]}
    tests, worth, units = [], [], []
    for i, goal in enumerate(goals):
        test, more = goal.sql(f"goal{i}")
        tests.append(test)
        params.update(more)
        # an aggregate's -If evaluates its argument on every row: the if() parses properties on the
        # goal's events only; a page view has no revenue
        has = f"{test} AND {HAS_REVENUE}"
        worth.append("0" if goal.page else f"sumIf(if({has}, {AMOUNT}, 0), {has})")
        units.append("[]" if goal.page else f"groupUniqArrayIf(if({has}, {CURRENCY}, ''), {has})")
    who = persons.who(filters)
    sql = f"""SELECT
    name AS goal,
    converted AS visitors,
    if(total = 0, 0, converted / total) AS conversion_rate,
    events AS conversions,
    worth AS value,
    arrayStringConcat(arraySort(units), ',') AS currencies
FROM (
    SELECT
        uniqExact({who}) AS total,
        [{', '.join(f'uniqExactIf({who}, {t})' for t in tests)}] AS converted_,
        [{', '.join(f'countIf({t})' for t in tests)}] AS events_,
        [{', '.join(worth)}] AS worth_,
        [{', '.join(units)}] AS units_
    FROM {_events(project_id)}{persons.join(project_id, filters)}
    WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
)
ARRAY JOIN %(goal_names)s AS name, converted_ AS converted, events_ AS events, worth_ AS worth, units_ AS units{FINAL_SETTINGS}"""
    return Query(sql, params, ("goal", "visitors", "conversion_rate", "conversions", "value", "currencies"))
