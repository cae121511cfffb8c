"""A view's state, read from and written back to its URL, so any view can be shared as a link.

Parameters (all optional): ``range`` (``today``, ``24h``, ``7d``, ``30d``, ``90d`` or ``custom`` with
``from`` and ``to`` as dates, both included), ``tz`` (an IANA time zone), ``interval`` (the trend's
``hour``/``day``/``week``/``month``; by default hours for ranges up to two days, else days), the
filters of :mod:`analytics.filters`, and each page's own: ``step`` (repeated) and ``window`` for
funnels, ``period`` and ``periods`` for retention, ``target``, ``rank``, ``path`` and ``direction`` for
discovery.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from analytics.cohorts import Cohort, for_breakdown
from analytics.conditions import Condition, ConditionError, check_key
from analytics.discovery import DIRECTIONS, MAX_STEP, RANKINGS
from analytics.filters import BOTS, COHORT, COUNT, FIELDS, GOAL, WHERE, FilterError, Filters
from analytics.goals import Goal, parse_goals
from analytics.queries import INTERVALS, METRICS, RETENTION_PERIODS

RANGES = {"today": "Today", "24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days",
          "90d": "Last 90 days", "custom": "Custom"}
DEFAULT_RANGE = "7d"
WINDOWS = {"3600": "1 hour", "86400": "1 day", "604800": "7 days", "2592000": "30 days"}
MAX_STEPS = 8


class StateError(ValueError):
    """A URL parameter that cannot be used; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class ViewState:
    range: str = DEFAULT_RANGE
    start: date | None = None  # custom range, in tz
    end: date | None = None
    tz: str = "UTC"
    interval: str = ""
    filters: Filters = Filters()
    steps: tuple[str, ...] = ()
    window: str = "86400"
    period: str = "week"
    periods: int = 8
    by_cohorts: bool = False  # by=cohorts: a funnel and a retention grid per cohort of the project
    breakdown: tuple[Cohort, ...] = ()  # those cohorts, looked up in the project (see :meth:`resolve`)
    goals: tuple[Goal, ...] = ()  # the project's goals (see :meth:`resolve`): the overview's block, funnel steps
    target: str = ""  # discovery: the conversion whose funnels and drivers to find
    rank: str = "volume"  # discovery: candidate funnels by volume or by dropoff
    path: str = ""  # discovery: the step whose paths to draw
    direction: str = "from"  # discovery: the paths from the step or to it
    series: tuple[str, ...] = ()  # trends: the events (or page paths) drawn, each a line; "" is every event
    metric: str = "count"  # trends: what each line counts (analytics.queries.METRICS)
    of: str = ""  # trends: the numeric property of a sum, average, median or p90
    split: str = ""  # trends, funnels: a column or property to break down by (URL: breakdown)
    compare: bool = False  # trends: each line beside its previous period of the same length

    def resolve(self, project_id: str, cohorts: list[dict], goals: list[dict] | None = None) -> ViewState:
        """The state with its cohort filter's definition and, with ``by_cohorts``, the project's cohorts
        to break down by, and the project's goals; raises :class:`FilterError` for an unknown cohort or goal."""
        names = [c["name"] for c in cohorts if isinstance(c, dict) and "name" in c] if self.by_cohorts else []
        try:
            breakdown = tuple(for_breakdown(project_id, cohorts, names))
        except ValueError as exc:
            raise FilterError(str(exc)) from exc
        return dataclasses.replace(self, filters=self.filters.resolve(project_id, cohorts, goals), breakdown=breakdown,
                                   goals=parse_goals(goals or []))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """The range as ``[since, until)``, aware datetimes."""
        now = (now or datetime.now(UTC)).astimezone(self.zone)
        midnight = datetime.combine(now.date(), datetime.min.time(), self.zone)
        tomorrow = midnight + timedelta(days=1)
        if self.range == "custom":
            assert self.start is not None and self.end is not None  # a custom range is parsed with both
            return (datetime.combine(self.start, datetime.min.time(), self.zone),
                    datetime.combine(self.end + timedelta(days=1), datetime.min.time(), self.zone))
        if self.range == "24h":
            end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            return end - timedelta(hours=24), end
        days = {"today": 1, "7d": 7, "30d": 30, "90d": 90}[self.range]
        return tomorrow - timedelta(days=days), tomorrow

    def trend_interval(self) -> str:
        if self.interval:
            return self.interval
        since, until = self.bounds()
        return "hour" if until - since <= timedelta(days=2) else "day"

    def params(self, **changes) -> dict[str, object]:
        """The state as URL parameters (defaults left out), with ``changes`` applied."""
        state = dataclasses.replace(self, **changes) if changes else self
        out: dict[str, object] = {}
        if state.range != DEFAULT_RANGE:
            out["range"] = state.range
        if state.range == "custom":
            assert state.start is not None and state.end is not None
            out["from"], out["to"] = state.start.isoformat(), state.end.isoformat()
        if state.tz != "UTC":
            out["tz"] = state.tz
        if state.interval:
            out["interval"] = state.interval
        out.update(state.filters.active())
        if state.filters.where:
            out[WHERE] = state.filters.conditions()
        if state.steps:
            out["step"] = list(state.steps)
        if state.window != "86400":
            out["window"] = state.window
        if state.period != "week":
            out["period"] = state.period
        if state.periods != 8:
            out["periods"] = state.periods
        if state.by_cohorts:
            out["by"] = "cohorts"
        out.update({name: getattr(state, name) for name, default in DISCOVERY_DEFAULTS.items()
                    if getattr(state, name) != default})
        if state.series:
            out["series"] = list(state.series)
        if state.metric != "count":
            out["metric"] = state.metric
        if state.of:
            out["of"] = state.of
        if state.split:
            out["breakdown"] = state.split
        if state.compare:
            out["compare"] = "previous"
        return out

    def query_string(self, **changes) -> str:
        text = urlencode(self.params(**changes), doseq=True)
        return "?" + text if text else ""

    def without_filter(self, name: str) -> str:
        resets: dict[str, dict[str, Any]] = {BOTS: {"include_bots": False}, COUNT: {"count_ids": False},
                                             COHORT: {"cohort": "", "definition": None},
                                             GOAL: {"goal": "", "goal_definition": None}}
        change = resets.get(name, {name: ""})
        filters = dataclasses.replace(self.filters, **change)
        return self.query_string(filters=filters)

    def without_condition(self, index: int) -> str:
        where = self.filters.where[:index] + self.filters.where[index + 1:]
        return self.query_string(filters=dataclasses.replace(self.filters, where=where))

    def with_condition(self, key: str, value: str) -> str:
        """The URL with one more condition: ``key`` equals ``value`` (a breakdown row's link)."""
        where = (*self.filters.where, Condition(key, "eq", value))
        return self.query_string(filters=dataclasses.replace(self.filters, where=where))

    def with_filter(self, name: str, value: str) -> str:
        change: dict[str, Any] = {name: value}
        filters = dataclasses.replace(self.filters, **change)
        return self.query_string(filters=filters)


DISCOVERY_DEFAULTS = {"target": "", "rank": "volume", "path": "", "direction": "from"}
MAX_SERIES = 5
EARLIEST, LATEST = date(1970, 1, 1), date(2299, 12, 30)  # what a DateTime64 holds, with a day to spare


def _date(text: str | None, name: str) -> date:
    try:
        value = date.fromisoformat(text or "")
    except ValueError as exc:
        raise StateError(f"{name} must be a date like 2026-11-01") from exc
    if not EARLIEST <= value <= LATEST:
        raise StateError(f"{name} must be a date from {EARLIEST} to {LATEST}")
    return value


def whole_number(text: str | None, name: str, low: int, high: int, default: int) -> int:
    """A whole number from ``low`` to ``high`` (the text's length is checked first: Python refuses to
    read integers of thousands of digits)."""
    text = text or str(default)
    if not text.isascii() or not text.isdigit() or len(text) > len(str(high)) or not low <= int(text) <= high:
        raise StateError(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def _choice(value: str | None, allowed, name: str, default: str) -> str:
    value = value or default
    if value not in allowed:
        raise StateError(f"{name} must be one of {', '.join(allowed)}")
    return value


def parse_state(params) -> ViewState:
    """The state in a request's query parameters (a Starlette ``QueryParams``); :class:`StateError`
    says what is wrong with a bad one."""
    range_ = _choice(params.get("range"), RANGES, "range", DEFAULT_RANGE)
    start = end = None
    for name in ("from", "to"):  # a bad date is refused even where the range does not use it
        if params.get(name) and range_ != "custom":
            _date(params.get(name), name)
    if range_ == "custom":
        start, end = _date(params.get("from"), "from"), _date(params.get("to"), "to")
        if end < start:
            raise StateError("to must not be before from")
        if (end - start).days > 3660:
            raise StateError("a custom range may span at most ten years")
    tz = params.get("tz") or "UTC"
    try:
        ZoneInfo(tz)
    except (KeyError, ValueError) as exc:
        raise StateError(f"unknown time zone {tz!r}") from exc
    interval = params.get("interval") or ""
    if interval and interval not in INTERVALS:
        raise StateError(f"interval must be one of {', '.join(INTERVALS)}")
    try:
        filters = Filters.from_mapping({**{name: params.get(name) for name in (*FIELDS, BOTS, COUNT, COHORT, GOAL)},
                                        WHERE: params.getlist(WHERE)})
    except FilterError as exc:
        raise StateError(str(exc)) from exc
    steps = tuple(s.strip() for s in params.getlist("step") if s.strip())
    if len(steps) > MAX_STEPS or any(len(s) > MAX_STEP for s in steps):
        raise StateError(f"a funnel has at most {MAX_STEPS} steps, each an event, a page path or a goal of at most "
                         f"{MAX_STEP} characters")
    window = str(whole_number(params.get("window"), "window", 1, 90 * 86400, 86400))
    period = _choice(params.get("period"), RETENTION_PERIODS, "period", "week")
    periods = whole_number(params.get("periods"), "periods", 1, 52, 8)
    by = params.get("by") or ""
    if by not in ("", "cohorts"):
        raise StateError("by must be cohorts")
    return ViewState(range_, start, end, tz, interval, filters, steps, window, period, periods, by == "cohorts",
                     **_discovery(params), **_trends(params))


def _trends(params) -> dict:
    series = tuple(s.strip() for s in params.getlist("series"))
    if len(series) > MAX_SERIES or any(len(s) > MAX_STEP for s in series):
        raise StateError(f"a trend has at most {MAX_SERIES} series, each an event or a page path of at most "
                         f"{MAX_STEP} characters")
    of, split = (params.get("of") or "").strip(), (params.get("breakdown") or "").strip()
    try:
        for key in (k for k in (of, split) if k):
            check_key(key)
    except ConditionError as exc:
        raise StateError(str(exc)) from exc
    compare = params.get("compare") or ""
    if compare not in ("", "previous"):
        raise StateError("compare must be previous")
    return {"series": series, "metric": _choice(params.get("metric"), METRICS, "metric", "count"), "of": of,
            "split": split, "compare": compare == "previous"}


def _discovery(params) -> dict:
    steps = {name: (params.get(name) or "").strip() for name in ("target", "path")}
    for name, step in steps.items():
        if len(step) > MAX_STEP:
            raise StateError(f"{name} must be a step of at most {MAX_STEP} characters")
    return {**steps, "rank": _choice(params.get("rank"), RANKINGS, "rank", "volume"),
            "direction": _choice(params.get("direction"), DIRECTIONS, "direction", "from")}
