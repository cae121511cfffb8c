"""The Stats API: what the dashboard's pages show, as JSON or CSV, for programs (docs/stats-api.md).

``GET /api/v1/projects/{project}/{view}`` answers every block of a view (its named queries, the ones
each of the page's blocks shows), ``GET /api/v1/projects/{project}/{view}/{block}`` one of them, as
JSON or, with ``format=csv``, CSV. A JSON answer that holds a chart's blocks has the chart's data too
(``chart``: :func:`dashboard.views.chart`), and the pages' charts draw what it answers. The query
string is the dashboard's own URL state (range, filters, conditions, goal, cohort and each view's
parameters: :mod:`dashboard.state`), so a page's link with ``/p/`` turned into ``/api/v1/projects/``
answers its figures. Pages and API run the same :func:`view_queries` on the same runner: one query
path.

Read-only: a read token sees its project, the admin token every project (``Authorization: Bearer``,
or the dashboard's login cookie). Each token has a token bucket of requests (``stats_api_burst``,
refilled at ``stats_api_requests_per_minute``) and at most ``stats_api_concurrent_requests`` answered
at once; past either, 429 with ``Retry-After``. Each query may run
``dashboard_query_timeout_s`` and read ``query_max_rows_to_read`` rows; past either, the answer says
so (:func:`query_refusal`). Errors are JSON ``{"error", "message"}`` with a 4xx or 503 status.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from clickhouse_driver.errors import ErrorCodes, ServerException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from analytics.filters import FilterError
from analytics.queries import Query, QueryError
from dashboard import views
from dashboard.access import viewer_of
from dashboard.state import StateError, ViewState, parse_state
from headwater.ratelimit import InFlight, TokenBuckets, retry_after
from headwater.settings import Settings

PREFIX = "/api/v1"
VIEWS = ("overview", "trends", "funnels", "retention", "sessions", "revenue")
FORMATS = ("json", "csv")


def error(status: int, title: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": title, "message": message}, status_code=status, headers=headers)


def query_refusal(exc: ServerException, settings: Settings) -> tuple[int, str, str] | None:
    """The status, title and reason of a query ClickHouse stopped for reading too much or too long
    (``None``: another error, which is a fault)."""
    if exc.code == ErrorCodes.TIMEOUT_EXCEEDED:
        return (503, "Too much to read", f"A query ran longer than {settings.dashboard_query_timeout_s} s; "
                "narrow the range or the filters.")
    if exc.code == ErrorCodes.TOO_MANY_ROWS:
        return (422, "Too much to read", f"A query would read more than {settings.query_max_rows_to_read:,} "
                "rows (query_max_rows_to_read); narrow the range or the filters.")
    return None


def view_queries(view: str, project_id: str, state: ViewState, **extra) -> dict[str, Query]:
    """A view's named queries for a state (and a page's ``extra`` arguments, such as the People page's
    search): what its page shows and what the API answers."""
    return views.QUERIES[view](project_id, state, **extra)


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# A spreadsheet runs a cell that starts with one of these as a formula: a sender's property value
# (=HYPERLINK(…)) must stay text when an analyst opens the CSV (OWASP's "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    value = _plain(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _as_csv(columns: tuple[str, ...], rows: list[dict]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([_cell(row[c]) for c in columns] for row in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


class StatsAPI:
    """The API's one endpoint (see the module); it keeps each token's bucket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.buckets = TokenBuckets(settings.stats_api_requests_per_minute / 60, settings.stats_api_burst)
        self.in_flight = InFlight(settings.stats_api_concurrent_requests)

    async def endpoint(self, request: Request) -> Response:
        viewer = viewer_of(request)
        if viewer is None:
            return error(401, "Log in", "send Authorization: Bearer <admin or read token>")
        if wait := self.buckets.take(viewer.subject):
            return error(429, "Too many requests", f"this token may send {self.settings.stats_api_burst} requests "
                         f"at once and {self.settings.stats_api_requests_per_minute:g} a minute",
                         {"Retry-After": retry_after(wait)})
        if not self.in_flight.enter(viewer.subject):
            return error(429, "Too many requests", f"this token may have {self.in_flight.limit} requests answered "
                         "at once", {"Retry-After": "1"})
        try:
            return await self._checked(request, viewer)
        finally:
            self.in_flight.leave(viewer.subject)

    async def _checked(self, request: Request, viewer) -> Response:
        project_id, view = request.path_params["project"], request.path_params["view"]
        project = request.app.state.store.get(project_id)
        if project is None or not viewer.may_see(project_id):
            return error(404, "No such project", f"There is no project {project_id[:100]!r} this token may see.")
        if view not in VIEWS:
            return error(404, "No such view", f"views: {', '.join(VIEWS)}")
        return await self._answer(request, project, view, request.path_params.get("block"))

    async def _answer(self, request: Request, project, view: str, block: str | None) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in FORMATS:
            return error(400, "Cannot answer", "format must be json or csv")
        if fmt == "csv" and not block:
            return error(400, "Cannot answer", "CSV holds one block: ask for /{view}/{block}?format=csv")
        try:
            state = parse_state(request.query_params).resolve(project.id, project.cohorts, project.goals)
            named = view_queries(view, project.id, state)
        except (StateError, FilterError, QueryError) as exc:
            return error(400, "Cannot answer", str(exc))
        if block and block not in named:
            return error(404, "No such block", f"the {view} view's blocks here: {', '.join(named)}")
        try:
            rows = await request.app.state.runner.records({block: named[block]} if block else named)
        except ServerException as exc:
            if (refused := query_refusal(exc, self.settings)) is None:
                raise
            return error(*refused)
        if fmt == "csv" and block:
            return _as_csv(named[block].columns, rows[block])
        since, until = state.bounds()
        body = {"project": project.id, "view": view, "since": since.isoformat(), "until": until.isoformat(),
                "blocks": {name: [{k: _plain(v) for k, v in row.items()} for row in found]
                           for name, found in rows.items()}}
        if (chart := views.chart(view, rows, state)) is not None:
            body["chart"] = chart
        return JSONResponse(body)
