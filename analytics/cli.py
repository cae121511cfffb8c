"""``headwater query …`` and ``headwater export …``: the query library and bulk exports from the shell.

Every query subcommand takes ``--project``, ``--from`` and ``--to`` (a date, or a date and time; read
in ``--tz``; ``--to`` is excluded), ``--tz``, ``--format table|json`` and ``--sql``, which prints the
SQL that would run, parameters filled in, instead of running it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clickhouse_driver.errors import Error as ClickHouseError
from clickhouse_driver.errors import ServerException

from analytics import overview, queries, revenue
from analytics.cohorts import for_breakdown
from analytics.conditions import Condition, ConditionError
from analytics.conditions import parse as parse_condition
from analytics.export import FORMATS, TIME_COLUMN, export, export_query
from analytics.filters import Filters
from analytics.goals import STEP_PREFIX, parse_goals
from analytics.queries import Query, QueryError
from analytics.run import as_json_lines, as_table, rendered_sql, rows
from headwater.clickhouse import project_database
from headwater.projects.model import Project


def _when(text: str, tz: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
        zone = ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise QueryError(f"{text!r} in {tz!r}: {exc}") from exc
    return value if value.tzinfo else value.replace(tzinfo=zone)


def range_of(args: argparse.Namespace) -> tuple[datetime, datetime]:
    until = _when(args.to, args.tz) if args.to else datetime.now(UTC)
    since = _when(args.since, args.tz) if args.since else until - timedelta(days=30)
    return since, until


def _build(args: argparse.Namespace) -> Query:
    since, until = range_of(args)
    p, f = args.project, Filters(include_bots=args.include_bots, count_ids=args.count == "ids", cohort=args.cohort or "",
                                 where=conditions_of(args), goal=args.goal or "")
    goal_steps = any(step.startswith(STEP_PREFIX) for step in getattr(args, "steps", ()))
    # the project is read from its Kafka topic only when the query names its cohorts or goals
    wanted = args.cohort or args.goal or goal_steps or args.query == "goals" or getattr(args, "by_cohorts", None)
    project = _project(p) if wanted else None
    cohorts, goals = (project.cohorts, project.goals) if project else ([], [])
    if args.cohort or args.goal:
        f = f.resolve(p, cohorts, goals)
    by = tuple(for_breakdown(p, cohorts, args.by_cohorts)) if getattr(args, "by_cohorts", None) else ()
    if args.query == "trends":
        return queries.trends(p, since, until, args.event, args.interval, args.breakdown, args.tz, f, by,
                              args.breakdown_limit, args.metric, args.of)
    if args.query == "funnel":
        return queries.funnel(p, args.steps, since, until, args.window, f, by, parse_goals(goals), args.breakdown,
                              args.breakdown_limit)
    if args.query == "goals":
        return overview.goals(p, parse_goals(goals), since, until, f)
    if args.query == "revenue":
        if args.by == "products":
            return revenue.products(p, since, until, args.limit, f)
        if args.by:
            return revenue.by_source(p, args.by, since, until, args.limit, f)
        return revenue.over_time(p, since, until, args.interval, args.tz, f)
    if args.query == "retention":
        return queries.retention(p, since, until, args.period, args.periods, args.cohort_event,
                                 args.return_event, args.tz, f, by, args.breakdown, args.breakdown_limit)
    if args.query == "top":
        return queries.top(p, args.what, since, until, args.limit, f)
    if args.query == "paths":
        return queries.paths(p, args.target, since, until, args.depth, args.limit, f)
    if args.query == "catalogue":
        return queries.catalogue(p, since, until)
    return queries.sessions(p, since, until, f)


def conditions_of(args: argparse.Namespace) -> tuple[Condition, ...]:
    """``--where`` conditions, checked (a bad one raises :class:`QueryError` with the reason)."""
    try:
        return tuple(parse_condition(text) for text in args.where or ())
    except ConditionError as exc:
        raise QueryError(str(exc)) from exc


def where_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--where", action="append", metavar="KEY:OP:VALUE",
                        help="only events meeting this condition on any property, e.g. properties.plan:eq:pro "
                             "(repeatable; docs/queries.md)")


def _project(project_id: str) -> Project | None:
    """The project, as the project registry (the projects topic) holds it."""
    import asyncio

    from headwater.projects.store import ProjectStore
    from headwater.settings import get_settings

    async def load() -> Project | None:
        store = ProjectStore(get_settings())
        await store.start()
        await store.stop()
        return store.get(project_id)

    return asyncio.run(load())


def _client():
    from headwater.clickhouse import make_client
    from headwater.settings import get_settings

    return make_client(get_settings())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _require_project(client, project_id: str | None) -> None:
    if project_id is not None and client.execute(f"EXISTS DATABASE {project_database(project_id)}") != [(1,)]:
        raise QueryError(f"there is no project {project_id!r} (no database {project_database(project_id)})")


def _run(command: str, build: Callable[[], Query], show: Callable[[object, Query], str], sql_only: bool,
         project_id: str | None = None) -> None:
    """Build the query (a refused argument exits with the reason), then print its SQL (``--sql``) or
    what ``show`` makes of running it."""
    try:
        query = build()
    except (QueryError, ValueError) as exc:
        raise SystemExit(f"headwater {command}: {exc}") from exc
    on_clickhouse(command, project_id, lambda client: rendered_sql(client, query) if sql_only else show(client, query))


def on_clickhouse(command: str, project_id: str | None, work: Callable[[object], str]) -> None:
    """Print what ``work`` makes with a client (the project must exist). Whatever goes wrong is one
    line on stderr, not a traceback."""
    client = None
    try:
        client = _client()
        _require_project(client, project_id)
        sys.stdout.write(work(client))
    except (QueryError, ValueError) as exc:
        raise SystemExit(f"headwater {command}: {exc}") from exc
    except ServerException as exc:
        raise SystemExit(f"headwater {command}: ClickHouse refused it: {_first_line(exc)}") from exc
    except (ClickHouseError, OSError, EOFError) as exc:
        raise SystemExit(f"headwater {command}: cannot reach ClickHouse: {_first_line(exc)}") from exc
    finally:
        if client is not None:
            client.disconnect()


def cmd_query(args: argparse.Namespace) -> None:
    def show(client, query: Query) -> str:
        result = rows(client, query)
        return as_json_lines(query, result) if args.format == "json" else as_table(query, result)

    _run("query", lambda: _build(args), show, args.sql, args.project)


def cmd_export(args: argparse.Namespace) -> None:
    if args.person:
        return _export_person(args)
    if not args.format:
        raise SystemExit("headwater export: --format is required (or --person ID)")

    def build() -> Query:
        since, until = range_of(args)
        return export_query(args.project, args.table, since, until, args.format, args.output)

    def show(client, query: Query) -> str:
        return json.dumps(dataclasses.asdict(export(client, query, args.format))) + "\n"

    _run("export", build, show, args.sql, args.project)


def _export_person(args: argparse.Namespace) -> None:
    """Everything stored about one person, as one JSON document on stdout (a right-of-access request)."""
    from analytics.people import export_person

    on_clickhouse("export", args.project, lambda client: json.dumps(
        export_person(client, args.project, args.person), indent=2, ensure_ascii=False, default=str) + "\n")


def cmd_sql(args: argparse.Namespace) -> None:
    """Any SQL, through the same connection settings as every role (the local engine serves the native
    protocol only)."""
    def show(client, query: Query) -> str:
        result, columns = client.execute(query.sql, with_column_types=True)
        named = Query(query.sql, {}, tuple(name for name, _ in columns))
        return as_json_lines(named, result) if args.format == "json" else as_table(named, result)

    _run("sql", lambda: Query(args.query, {}, ()), show, False)


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True)
    parser.add_argument("--from", dest="since", help="start, included (default: 30 days before --to)")
    parser.add_argument("--to", help="end, excluded (default: now)")
    parser.add_argument("--tz", default="UTC", help="time zone of --from/--to and of periods (default UTC)")
    parser.add_argument("--sql", action="store_true", help="print the SQL instead of running it")


def add_parsers(sub) -> None:
    query = sub.add_parser("query", help="analytics queries over a project's events (--sql shows the SQL)")
    kinds = query.add_subparsers(dest="query", required=True)
    parsers = {
        "trends": "events and unique visitors per period, optionally broken down",
        "funnel": "visitors reaching each step in order within a window, and the time between steps",
        "retention": "cohorts by first event, and how many come back in each later period",
        "top": "top pages, referrers, countries or browsers",
        "paths": "the most common paths to an event",
        "sessions": "session count, bounce rate and average duration",
        "catalogue": "each event name, its properties and their types, with volumes and first/last seen",
        "goals": "each of the project's goals: visitors converted, conversion rate, conversions and their value",
        "revenue": "revenue per currency over time, by where the buyers came from (--by), or by product",
    }
    made = {}
    for name, help_text in parsers.items():
        made[name] = kinds.add_parser(name, help=help_text)
        common_arguments(made[name])
        made[name].add_argument("--format", choices=["table", "json"], default="table")
        where_argument(made[name])
        made[name].add_argument("--include-bots", action="store_true",
                                help="count events whose user agent is on the crawler list (left out by default)")
        made[name].add_argument("--goal", metavar="NAME", help="only this goal's events, and the sessions that "
                                "converted (one of the project's goals)")
        made[name].add_argument("--cohort", metavar="NAME", help="only the events and sessions of this cohort's "
                                "members (one of the project's cohorts)")
        made[name].add_argument("--count", choices=["persons", "ids"], default="persons",
                                help="what one visitor is: a person (every id identify and alias merged; the "
                                "default) or one id")
        made[name].set_defaults(func=cmd_query)
    for name in ("trends", "funnel", "retention"):
        made[name].add_argument("--by-cohorts", nargs="+", metavar="NAME",
                                help="one series, funnel or grid per cohort of these, of its members")
    made["trends"].add_argument("--event", help="only this event, or page views of a path starting with / "
                                                 "(default: every event)")
    made["trends"].add_argument("--interval", choices=queries.INTERVALS, default="day")
    for name in ("trends", "funnel", "retention"):
        made[name].add_argument("--breakdown", metavar="KEY", help="a column (" + ", ".join(queries.BREAKDOWNS) +
                                ") or any property, properties.NAME (a funnel or retention: its value on each "
                                "visitor's first step or cohort event)")
    made["trends"].add_argument("--metric", choices=queries.METRICS,
                                help="a value column more: events, persons, sessions, or the sum, average, median or "
                                     "90th percentile of the numeric property --of")
    made["trends"].add_argument("--of", metavar="properties.NAME", help="the numeric property of --metric")
    for name, limit in (("trends", 25), ("funnel", 10), ("retention", 10)):
        made[name].add_argument("--breakdown-limit", type=int, default=limit,
                                help="the most frequent values kept; the rest are counted as (other)")
    made["funnel"].add_argument("steps", nargs="+", help="the steps, in order: an event's name, /PATH for a page, "
                                                             "goal:NAME for one of the project's goals")
    made["funnel"].add_argument("--window", type=int, default=86_400, help="seconds from the first step (1 day)")
    made["revenue"].add_argument("--by", choices=[*revenue.BY, "products"],
                                 help="by the sessions' channel, referrer, utm_source or campaign, or by product "
                                 "(default: over time)")
    made["revenue"].add_argument("--interval", choices=queries.INTERVALS, default="day")
    made["revenue"].add_argument("--limit", type=int, default=10)
    made["retention"].add_argument("--period", choices=queries.RETENTION_PERIODS, default="week")
    made["retention"].add_argument("--periods", type=int, default=8)
    made["retention"].add_argument("--cohort-event", help="the event that puts a visitor in a cohort (any)")
    made["retention"].add_argument("--return-event", help="the event that counts as coming back (any)")
    made["top"].add_argument("what", choices=sorted(queries.TOP))
    made["top"].add_argument("--limit", type=int, default=10)
    made["paths"].add_argument("target", help="an event name, or a page path")
    made["paths"].add_argument("--depth", type=int, default=3)
    made["paths"].add_argument("--limit", type=int, default=10)

    sql = sub.add_parser("sql", help="run any SQL on ClickHouse and print the result (a table, or JSON lines)")
    sql.add_argument("query", help='for example "SELECT event, count() FROM hw_default.events GROUP BY event"')
    sql.add_argument("--format", choices=["table", "json"], default="table")
    sql.set_defaults(func=cmd_sql)

    exporter = sub.add_parser("export", help="bulk export of a table, written by ClickHouse as parquet or jsonl")
    common_arguments(exporter)
    exporter.add_argument("--format", choices=sorted(FORMATS), help="required for a table's export")
    exporter.add_argument("--person", metavar="ID", help="instead: everything stored about the person of this id "
                          "(any of its ids), as JSON on stdout (a right-of-access request)")
    exporter.add_argument("--table", choices=sorted(TIME_COLUMN), default="events")
    exporter.add_argument("--output", help="path inside ClickHouse's user_files directory (default: "
                                           "headwater/<project>/<table>-<from>-<to>.<ext>)")
    exporter.set_defaults(func=cmd_export)
