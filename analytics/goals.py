"""Goals: a project's named conversions, and what they are worth.

A goal is part of the project's configuration (``goals``, through the admin API's ``PATCH
/v1/projects/P/config`` or ``headwater project configure P --goals '[…]'``)::

    [{"name": "Saw pricing", "page": "/pricing*"},
     {"name": "Pro signup", "event": "Signed Up", "where": ["properties.plan:eq:pro"]}]

- ``page``: a page view whose path matches the pattern, where ``*`` stands for any characters
  (``/blog/*``; matched with ``LIKE``, so a pattern costs linear time whatever it holds);
- ``event``: a track event of that name, meeting every condition of ``where`` (at most 10, the syntax
  of :mod:`analytics.conditions`: ``properties.plan:eq:pro``).

A goal event's value is its ``revenue`` property (Segment's; :mod:`analytics.revenue`), so each goal
has a conversion value.

Where goals show: :func:`analytics.overview.goals` (the overview's Goals block: visitors who converted, the
conversion rate, conversions and their value), a funnel step ``goal:NAME``
(:func:`analytics.queries.funnel`), and a filter (``Filters(goal=NAME)``: the goal's events, and the
sessions that converted).
"""

from __future__ import annotations

import dataclasses
import re

from analytics.conditions import MAX_CONDITIONS, Condition, ConditionError, parse

MAX_GOALS = 30
MAX_TEXT = 200
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:/()-]{0,79}$")
STEP_PREFIX = "goal:"  # a funnel step naming a goal


class GoalError(ValueError):
    """A goal that is not defined, or not defined well; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Goal:
    """A checked goal of a project (see the module); :func:`find` and :func:`parse_goals` make them."""

    name: str
    page: str = ""
    event: str = ""
    where: tuple[Condition, ...] = ()

    def sql(self, prefix: str) -> tuple[str, dict]:
        """The condition an event meets when it is a conversion, and its parameters (``{prefix}_…``)."""
        if self.page:
            return f"(type = 'page' AND url_path LIKE %({prefix}_page)s)", {f"{prefix}_page": like(self.page)}
        sql, params = f"event = %({prefix}_event)s", {f"{prefix}_event": self.event}
        for i, condition in enumerate(self.where):
            text, more = condition.sql(f"{prefix}_w{i}")
            sql, params = f"{sql} AND {text}", {**params, **more}
        return f"({sql})", params

    def prefilter(self, prefix: str) -> tuple[str, dict]:
        """A wider condition on the sorting key's columns that every conversion meets."""
        if self.page:
            return f"(event = 'page' AND url_path LIKE %({prefix}_page)s)", {f"{prefix}_page": like(self.page)}
        return f"event = %({prefix}_event)s", {f"{prefix}_event": self.event}


def like(pattern: str) -> str:
    """A page pattern as a ``LIKE`` pattern: ``*`` is any characters; ``%``, ``_`` and ``\\`` are themselves."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def check_goals(raw: object) -> list[str]:
    """The problems of a project's ``goals``."""
    if not isinstance(raw, list):
        return ["goals must be a list"]
    if len(raw) > MAX_GOALS:
        return [f"a project has at most {MAX_GOALS} goals"]
    problems = [p for goal in raw for p in _check_goal(goal)]
    names = [str(g.get("name")) for g in raw if isinstance(g, dict)]
    return problems + [f"goal {name!r} is defined twice" for name in sorted({n for n in names if names.count(n) > 1})]


def _check_goal(raw: object) -> list[str]:
    if not isinstance(raw, dict):
        return ["a goal must be an object with a name and a page or an event"]
    name = raw.get("name")
    where = f"goal {name!r}" if isinstance(name, str) else "a goal"
    problems = [f"{where}: {key} is not a field (name, page, event, where)" for key in raw
                if key not in ("name", "page", "event", "where")]
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(f"{where}: name must be 1-80 letters, digits, spaces or _ . : / ( ) -")
    kinds = [kind for kind in ("page", "event") if kind in raw]
    if len(kinds) != 1:
        return [*problems, f"{where}: a goal has exactly one of page, event"]
    value = raw[kinds[0]]
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT:
        problems.append(f"{where}: {kinds[0]} must be text of 1 to {MAX_TEXT} characters")
    elif kinds[0] == "page" and not value.startswith("/"):
        problems.append(f"{where}: page must be a path pattern starting with / (* is any characters)")
    conditions = raw.get("where", [])
    if "where" in raw and kinds[0] == "page":
        problems.append(f"{where}: where goes with an event goal")
    elif not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
        problems.append(f"{where}: where must be a list of at most {MAX_CONDITIONS} conditions")
    else:
        for text in conditions:
            try:
                parse(text)
            except ConditionError as exc:
                problems.append(f"{where}: {exc}")
    return problems


def _goal(raw: dict) -> Goal:
    return Goal(raw["name"], raw.get("page", ""), raw.get("event", ""),
                tuple(parse(text) for text in raw.get("where", [])))


def find(goals: list[dict], name: str) -> Goal:
    """The project's goal called ``name``; raises :class:`GoalError` naming the ones there are."""
    for raw in goals:
        if isinstance(raw, dict) and raw.get("name") == name and not _check_goal(raw):
            return _goal(raw)
    known = ", ".join(str(g.get("name")) for g in goals if isinstance(g, dict)) or "none"
    raise GoalError(f"the project has no goal {name[:80]!r} (it has: {known})")


def parse_goals(goals: list[dict]) -> tuple[Goal, ...]:
    """Every well-defined goal of the project, in its order."""
    return tuple(_goal(raw) for raw in goals if isinstance(raw, dict) and not _check_goal(raw))
