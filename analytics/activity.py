"""Queries on single visits and single records: the latest events, recent sessions, one session's
timeline, and the events that failed. Each returns a :class:`~analytics.queries.Query`."""

from __future__ import annotations

from datetime import datetime

from analytics.filters import NONE, Filters
from analytics.queries import FINAL_SETTINGS, SINCE, UNTIL, VISITOR, Query, QueryError, _events, time_range
from headwater.clickhouse import project_database

RECENT_EVENT_COLUMNS = ("timestamp", "type", "event", "url_path", "visitor", "session_id", "country", "device",
                        "browser",
                 "message_id")
RECENT_SESSION_COLUMNS = ("session_id", "visitor_id", "start_at", "end_at", "duration_s", "pageviews", "events",
                   "entry_page", "exit_page", "referrer_source", "utm_campaign", "country", "device", "browser")
SAMPLE_BYTES = 2000


def _limit(limit: int) -> dict:
    if not 1 <= limit <= 1000:
        raise QueryError("limit must be between 1 and 1000")
    return {"limit": limit}


def latest_events(project_id: str, since: datetime, until: datetime, limit: int = 100,
                  filters: Filters = NONE) -> Query:
    """The newest events (by their time) in the range, newest first."""
    sql = f"""SELECT {', '.join(RECENT_EVENT_COLUMNS[:4])}, {VISITOR} AS visitor, {', '.join(RECENT_EVENT_COLUMNS[5:])}
FROM {_events(project_id)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
ORDER BY timestamp DESC, message_id
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), **_limit(limit), **filters.params()}, RECENT_EVENT_COLUMNS)


def recent_sessions(project_id: str, since: datetime, until: datetime, limit: int = 50,
                    filters: Filters = NONE) -> Query:
    """The latest sessions that started in the range, newest first, each in its current state (the
    table's collapsed rows: see docs/schema.md)."""
    sql = f"""SELECT {', '.join(RECENT_SESSION_COLUMNS)}
FROM {project_database(project_id)}.sessions FINAL
WHERE start_at >= {SINCE} AND start_at < {UNTIL} AND sign = 1{filters.sessions_condition(project_id, SINCE, UNTIL)}
ORDER BY start_at DESC, session_id
LIMIT %(limit)s"""
    return Query(sql, {**time_range(since, until), **_limit(limit), **filters.params()}, RECENT_SESSION_COLUMNS)


def session_timeline(project_id: str, session_id: str, since: datetime, until: datetime) -> Query:
    """Every event of one session in order: the visitor's journey. ``since`` and ``until`` bound where
    to look (the session's start and end)."""
    if not session_id or len(session_id) > 200:
        raise QueryError("a session id is required")
    sql = f"""SELECT {', '.join(RECENT_EVENT_COLUMNS[:4])}, {VISITOR} AS visitor, {', '.join(RECENT_EVENT_COLUMNS[5:])}
FROM {_events(project_id)}
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL} AND session_id = %(session_id)s
ORDER BY timestamp, session_seq, message_id{FINAL_SETTINGS}"""
    return Query(sql, {**time_range(since, until), "session_id": session_id}, RECENT_EVENT_COLUMNS)


def failure_reasons(project_id: str, since: datetime, until: datetime) -> Query:
    """Events that failed in the range, counted by step and reason, with the latest time of each."""
    sql = f"""SELECT step, reason, count() AS failed, max(failed_at) AS last_at
FROM {project_database(project_id)}.failed_events
WHERE failed_at >= {SINCE} AND failed_at < {UNTIL}
GROUP BY step, reason
ORDER BY failed DESC, step, reason"""
    return Query(sql, time_range(since, until), ("step", "reason", "failed", "last_at"))


def failure_samples(project_id: str, since: datetime, until: datetime, per_reason: int = 3) -> Query:
    """The latest ``per_reason`` failures of each reason in the range, with where in the event it failed
    and the start of the payload."""
    if not 1 <= per_reason <= 100:
        raise QueryError("per_reason must be between 1 and 100")
    sql = f"""SELECT reason, failed_at, step, path, detail, message_id, substring(payload, 1, {SAMPLE_BYTES}) AS payload
FROM {project_database(project_id)}.failed_events
WHERE failed_at >= {SINCE} AND failed_at < {UNTIL}
ORDER BY reason, failed_at DESC
LIMIT %(per_reason)s BY reason"""
    return Query(sql, {**time_range(since, until), "per_reason": per_reason},
                 ("reason", "failed_at", "step", "path", "detail", "message_id", "payload"))


def recent_alerts(project_id: str, since: datetime, until: datetime, limit: int = 100) -> Query:
    """The latest alerts raised in the range (by the event time of what raised them), newest first."""
    if not 1 <= limit <= 1000:
        raise QueryError("limit must be between 1 and 1000")
    sql = f"""SELECT at, rule, kind, subject, text, quiet, alert_id
FROM {project_database(project_id)}.alerts FINAL
WHERE at >= {SINCE} AND at < {UNTIL}
ORDER BY at DESC, alert_id
LIMIT %(limit)s"""
    return Query(sql, {**time_range(since, until), "limit": limit},
                 ("at", "rule", "kind", "subject", "text", "quiet", "alert_id"))


def alerts_by_rule(project_id: str, since: datetime, until: datetime) -> Query:
    """How many alerts each rule raised in the range, and the last one's time."""
    sql = f"""SELECT rule, count() AS alerts, max(at) AS last_at
FROM {project_database(project_id)}.alerts FINAL
WHERE at >= {SINCE} AND at < {UNTIL}
GROUP BY rule
ORDER BY rule"""
    return Query(sql, time_range(since, until), ("rule", "alerts", "last_at"))


def dead_letters_by_step(project_id: str, since: datetime, until: datetime) -> Query:
    """Events each step of the flow dead-lettered in the range (the Flow page's figures)."""
    sql = f"""SELECT step, count() AS events
FROM {project_database(project_id)}.failed_events
WHERE failed_at >= {SINCE} AND failed_at < {UNTIL}
GROUP BY step
ORDER BY step"""
    return Query(sql, time_range(since, until), ("step", "events"))


def step_counts(project_id: str, since: datetime, until: datetime) -> Query:
    """What the mediator and each step of the flow did to the project's events in the range (when they
    ran), as their processes counted them: events in and out, dropped and dead-lettered."""
    sql = f"""SELECT step, sum(events_in) AS events_in, sum(events_out) AS events_out, sum(dropped) AS dropped,
       sum(dead_lettered) AS dead_lettered
FROM {project_database(project_id)}.step_counts
WHERE minute >= {SINCE} AND minute < {UNTIL}
GROUP BY step
ORDER BY step"""
    return Query(sql, time_range(since, until), ("step", "events_in", "events_out", "dropped", "dead_lettered"))


def stored(project_id: str, since: datetime, until: datetime) -> Query:
    """Events stored whose time is in the range (a recent range: what live traffic stores). By the
    events' own time, which the table is sorted by: counting by ``inserted_at`` instead would read
    that column of the whole table."""
    sql = f"""SELECT count() AS events
FROM {project_database(project_id)}.events
WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}"""
    return Query(sql, time_range(since, until), ("events",))
