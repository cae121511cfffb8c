"""The Stats API's OpenAPI 3.1 document (:mod:`dashboard.api`), built from the same lists the state
parser and the query library check against, so it cannot drift from what the API accepts.

Served at ``/api/v1/openapi.json``; a copy is kept in ``docs/stats-api.json`` (regenerate it with
``python -m dashboard.stats_openapi > docs/stats-api.json``; a test checks that they match).
"""

from __future__ import annotations

import functools
import json

from analytics.filters import BOTS, COHORT, COUNT, FIELDS, GOAL, IDS, INCLUDE, WHERE
from analytics.queries import INTERVALS, METRICS, RETENTION_PERIODS
from dashboard.api import FORMATS, PREFIX, VIEWS
from dashboard.state import MAX_SERIES, MAX_STEPS, RANGES

ERRORS = {
    "400": "A parameter that cannot be used; `message` says which and why (text, not JSON, when the request "
           "line is longer than the HTTP server reads)",
    "401": "No token, or one that opens nothing",
    "404": "No such project for this token, no such view, or no such block of the view",
    "422": "A query would read more than `query_max_rows_to_read` rows; narrow the range or the filters",
    "429": "Over this token's rate limit; retry after `Retry-After` seconds",
    "503": "A query ran longer than `dashboard_query_timeout_s`; narrow the range or the filters",
}
# each view's blocks; some only with some parameters: goals (with goals), previousN (compare=previous),
# funnel (two or more steps), breakdown and by (with breakdown)
BLOCKS = {
    "overview": ("traffic", "engagement", "trend", "goals", "pages", "entry_pages", "exit_pages", "channels",
                 "referrers", "campaigns", "countries", "browsers", "os", "devices", "breakdown"),
    "trends": (*(f"series{i}" for i in range(MAX_SERIES)), *(f"previous{i}" for i in range(MAX_SERIES))),
    "funnels": ("events", "funnel"),
    "retention": ("retention",),
    "sessions": ("sessions", "summary", "new", "by"),
    "revenue": ("over_time", "products", "channels", "campaigns", "referrers"),
}


EMPTY = {"type": "string", "maxLength": 0}


def _query(name: str, schema: dict, description: str, array: bool = False) -> dict:
    """A query parameter; an empty value is the same as none (as a dashboard form sends an unused field)."""
    if schema.get("type") != "string" or "enum" in schema or "format" in schema:
        schema = {"anyOf": [schema, EMPTY]}
    found = {"name": name, "in": "query", "required": False, "description": description,
             "schema": {"type": "array", "items": schema} if array else schema}
    if array:
        found.update(style="form", explode=True)
    return found


def _text(max_length: int = 1000) -> dict:
    return {"type": "string", "maxLength": max_length}


def _parameters() -> list[dict]:
    return [
        _query("range", {"type": "string", "enum": list(RANGES)}, "the range; custom takes from and to"),
        _query("from", {"type": "string", "format": "date"}, "a custom range's first day"),
        _query("to", {"type": "string", "format": "date"}, "a custom range's last day (included)"),
        _query("tz", _text(64), "an IANA time zone for days and the range's edges (default UTC)"),
        _query("interval", {"type": "string", "enum": list(INTERVALS)}, "a trend's period"),
        *(_query(name, _text(), f"only events (sessions) whose {name} is this") for name in FIELDS),
        _query(GOAL, _text(80), "a goal's conversions, and the sessions that converted"),
        _query(COHORT, _text(80), "only the events and sessions of a cohort's members"),
        _query(WHERE, _text(2000), "a condition KEY:OPERATOR:VALUE on any property (docs/queries.md)", array=True),
        _query(BOTS, {"type": "string", "enum": [INCLUDE]}, "count bots too"),
        _query(COUNT, {"type": "string", "enum": ["persons", IDS]}, "what one visitor is"),
        _query("series", _text(), f"trends: an event or a page path (at most {MAX_SERIES})", array=True),
        _query("metric", {"type": "string", "enum": list(METRICS)}, "trends: what each line counts"),
        _query("of", _text(), "trends: the numeric property of sum, avg, median, p90"),
        _query("breakdown", _text(), "a column or properties.NAME to break down by: one trend series, a funnel, "
               "a retention grid, the overview (block breakdown) or sessions (block by)"),
        _query("compare", {"type": "string", "enum": ["previous"]}, "trends: each series' previous period too"),
        _query("step", _text(), f"funnels: an event, a page path or goal:NAME (2 to {MAX_STEPS})", array=True),
        _query("window", {"type": "integer", "minimum": 1, "maximum": 90 * 86400}, "funnels: seconds"),
        _query("by", {"type": "string", "enum": ["cohorts"]}, "one funnel, grid or line per saved cohort"),
        _query("period", {"type": "string", "enum": list(RETENTION_PERIODS)}, "retention: the period"),
        _query("periods", {"type": "integer", "minimum": 1, "maximum": 52}, "retention: how many periods"),
    ]


def _error() -> dict:
    return {"type": "object", "required": ["error", "message"],
            "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}


def _responses(block: bool) -> dict:
    ok: dict = {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}}
    if block:
        ok["text/csv"] = {"schema": {"type": "string"}}
    found: dict = {"200": {"description": "the blocks' rows (one block's, as JSON or CSV)", "content": ok}}
    for status, text in ERRORS.items():
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        found[status] = {"description": text, "content": error if status != "400" else {
            **error, "text/plain": {"schema": {"type": "string"}}}}
        if status == "429":
            found[status]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return found


def _path(block: bool) -> dict:
    parameters = [{"name": "project", "in": "path", "required": True, "schema": {"type": "string"}},
                  {"name": "view", "in": "path", "required": True,
                   "schema": {"type": "string", "enum": list(VIEWS)},
                   "description": "; ".join(f"{view}: {', '.join(blocks)}" for view, blocks in BLOCKS.items())}]
    if block:
        names = sorted({name for blocks in BLOCKS.values() for name in blocks})
        parameters.append({"name": "block", "in": "path", "required": True,
                           "schema": {"type": "string", "enum": names},
                           "description": "one of the view's blocks (see view); another view's is 404"})
    fmt = _query("format", {"type": "string", "enum": list(FORMATS) if block else ["json"]},
                 "json (default) or, for one block, csv")
    summary = "One block of a view" if block else "Every block of a view"
    return {"get": {"summary": summary, "security": [{"token": []}], "parameters": [*parameters, *_parameters(), fmt],
                    "responses": _responses(block)}}


def _chart() -> dict:
    numbers = {"type": "array", "items": {"type": "number"}}
    line = {"type": "object", "required": ["name", "visitors"],
            "properties": {"name": {"type": "string"}, "visitors": numbers}}
    return {"type": "object", "required": ["x", "from", "to"],
            "description": "with a chart's blocks (overview: trend; trends: every series; revenue: over_time): "
                           "the period starts (x, seconds), the range (from, to, seconds) and the lines, "
                           "each value at the period of the same place in x: events and visitors, or one "
                           "line per cohort, series or currency (cohorts)",
            "properties": {"x": {"type": "array", "items": {"type": "integer"}}, "from": {"type": "integer"},
                           "to": {"type": "integer"}, "events": numbers, "visitors": numbers,
                           "cohorts": {"type": "array", "items": line}}}


@functools.cache
def openapi_document() -> dict:
    rows = {"type": "array", "items": {"type": "object"}}
    answer = {"type": "object", "required": ["project", "view", "since", "until", "blocks"],
              "properties": {"project": {"type": "string"}, "view": {"type": "string"},
                             "since": {"type": "string", "format": "date-time"},
                             "until": {"type": "string", "format": "date-time"},
                             "blocks": {"type": "object", "additionalProperties": rows},
                             "chart": _chart()}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Headwater Stats API", "version": "1",
                 "description": "What the dashboard shows, read-only, as JSON or CSV (docs/stats-api.md)."},
        "paths": {f"{PREFIX}/projects/{{project}}/{{view}}": _path(False),
                  f"{PREFIX}/projects/{{project}}/{{view}}/{{block}}": _path(True)},
        "components": {"schemas": {"Answer": answer, "Error": _error()},
                       "securitySchemes": {"token": {"type": "http", "scheme": "bearer",
                                                     "description": "the admin token or a project's read token"}}},
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))
