"""Filters that narrow every query of the library to some events: a country, a device, a campaign, a page.

Bots (events whose user agent is on the crawler list, ``is_bot``) are left out of every query unless
``include_bots`` is set (``bots=include`` in a dashboard URL, ``--include-bots`` on the command line).

Filters combine with AND. They are conditions on each event's own columns, so "country = DE" keeps the
events sent from Germany (a visitor who travels is counted where each event was sent from). On the
``sessions`` table the same filters keep sessions whose entry matches (country, device and campaign are
taken from a session's first event there), and a page filter keeps sessions that viewed the page.

``where`` conditions (:mod:`analytics.conditions`) test any property, custom ones included: an event
must meet them all; a session is kept when one of its events in the range does. A ``goal``
(:mod:`analytics.goals`) is a condition alike: its conversions, and the sessions that converted.
"""

from __future__ import annotations

import dataclasses

from analytics.channels import CHANNEL_SQL
from analytics.cohorts import Cohort, find
from analytics.conditions import MAX_CONDITIONS, Condition, ConditionError, parse
from analytics.goals import Goal, GoalError
from analytics.goals import find as find_goal
from headwater.clickhouse import project_database

# filter name -> events column; each is matched for equality
FIELDS = {
    "country": "country",
    "device": "device",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "page": "url_path",
    "channel": CHANNEL_SQL,  # analytics/channels.py: a rule over utm tags and the referrer, on events and sessions
}
SESSION_FIELDS = {name: column for name, column in FIELDS.items() if name != "page"}
BOTS, INCLUDE = "bots", "include"
COUNT, IDS = "count", "ids"  # count=ids: count distinct ids, not persons (analytics/persons.py)
COHORT = "cohort"  # cohort=NAME: only the events and sessions of a cohort's members (analytics/cohorts.py)
GOAL = "goal"  # goal=NAME: only a goal's events, and the sessions that converted (analytics/goals.py)
WHERE = "where"  # where=KEY:OP:VALUE, repeatable: conditions on any property (analytics/conditions.py)
MAX_VALUE = 1000


class FilterError(ValueError):
    """A filter that cannot be applied; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Filters:
    country: str = ""
    device: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    page: str = ""
    channel: str = ""
    include_bots: bool = False
    count_ids: bool = False  # not a filter: what counts as one visitor (analytics/persons.py)
    cohort: str = ""  # a cohort's name; :meth:`resolve` finds its definition
    definition: Cohort | None = None
    where: tuple[Condition, ...] = ()  # conditions on any property, all of which an event meets
    goal: str = ""  # a goal's name; :meth:`resolve` finds its definition
    goal_definition: Goal | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) > MAX_VALUE:
                raise FilterError(f"filter {name} must be text of at most {MAX_VALUE} characters")
        for name in (COHORT, GOAL):
            if not isinstance(getattr(self, name), str) or len(getattr(self, name)) > 80:
                raise FilterError(f"filter {name} must be a {name}'s name")
        if len(self.where) > MAX_CONDITIONS:
            raise FilterError(f"at most {MAX_CONDITIONS} conditions (where)")

    @classmethod
    def from_mapping(cls, values) -> Filters:
        """The filters named in ``values`` (query-string parameters); unknown names are ignored."""
        bots = str(values.get(BOTS) or "").strip()
        if bots not in ("", INCLUDE):
            raise FilterError(f"bots must be {INCLUDE}, not {bots[:40]!r}")
        include_bots = bots == INCLUDE
        count = str(values.get(COUNT) or "").strip()
        if count not in ("", "persons", IDS):
            raise FilterError(f"count must be persons or {IDS}, not {count[:40]!r}")
        count_ids = count == IDS
        sent: dict = {name: str(values.get(name) or "") for name in FIELDS}
        if long := [name for name, value in sent.items() if len(value) > MAX_VALUE]:  # as sent, spaces too
            raise FilterError(f"filter {long[0]} must be text of at most {MAX_VALUE} characters")
        fields = {name: value.strip() for name, value in sent.items()}
        texts = values.get(WHERE) or []
        try:
            where = tuple(parse(text) for text in ([texts] if isinstance(texts, str) else texts) if text.strip())
        except ConditionError as exc:
            raise FilterError(str(exc)) from exc
        return cls(**fields, include_bots=include_bots, count_ids=count_ids,
                   cohort=str(values.get(COHORT) or "").strip(), where=where, goal=str(values.get(GOAL) or "").strip())

    def resolve(self, project_id: str, cohorts: list[dict], goals: list[dict] | None = None) -> Filters:
        """These filters with the definitions of their cohort and goal, among the project's ``cohorts``
        and ``goals``; raises :class:`FilterError` when the project has none of that name."""
        resolved = self
        try:
            if self.cohort:
                resolved = dataclasses.replace(resolved, definition=find(project_id, cohorts, self.cohort))
            if self.goal:
                resolved = dataclasses.replace(resolved, goal_definition=find_goal(goals or [], self.goal))
        except (ValueError, GoalError) as exc:
            raise FilterError(str(exc)) from exc
        return resolved

    def active(self) -> dict[str, str]:
        """The filters that narrow anything, as URL parameters (``bots=include`` widens, ``count=ids``
        changes what a visitor is)."""
        active = {name: getattr(self, name) for name in FIELDS if getattr(self, name)}
        if self.cohort:
            active[COHORT] = self.cohort
        if self.goal:
            active[GOAL] = self.goal
        if self.include_bots:
            active[BOTS] = INCLUDE
        if self.count_ids:
            active[COUNT] = IDS
        return active

    def conditions(self) -> list[str]:
        """The conditions, as their ``where`` URL parameters."""
        return [str(c) for c in self.where]

    def _equalities(self) -> list[str]:
        return [name for name in FIELDS if getattr(self, name)]

    def __bool__(self) -> bool:
        return (bool(self._equalities()) or self.include_bots or bool(self.cohort) or bool(self.where)
                or bool(self.goal))

    def params(self) -> dict:
        own = {f"filter_{name}": getattr(self, name) for name in self._equalities()}
        for i, condition in enumerate(self.where):
            own.update(condition.sql(f"where{i}")[1])
        if self.goal:
            own.update(self._goal().sql("goal_filter")[1])
        return {**own, **self._cohort().params()} if self.cohort else own

    def _where(self) -> str:
        """The conditions every event must meet: ``where`` and the goal's."""
        goal = f" AND {self._goal().sql('goal_filter')[0]}" if self.goal else ""
        return "".join(f" AND {condition.sql(f'where{i}')[0]}" for i, condition in enumerate(self.where)) + goal

    def _goal(self) -> Goal:
        if self.goal_definition is None:
            raise FilterError(f"the goal {self.goal!r} was not looked up in the project (Filters.resolve)")
        return self.goal_definition

    def _cohort(self) -> Cohort:
        if self.definition is None:
            raise FilterError(f"the cohort {self.cohort!r} was not looked up in the project (Filters.resolve)")
        return self.definition

    def _cohort_condition(self) -> str:
        return self._cohort().ids_condition(self.count_ids) if self.cohort else ""

    def _bots(self) -> str:
        return "" if self.include_bots else " AND NOT is_bot"

    def events_condition(self) -> str:
        """`` AND …`` for a query on ``events``; parameters from :meth:`params`."""
        return (self._bots() + "".join(f" AND {FIELDS[name]} = %(filter_{name})s" for name in self._equalities())
                + self._where() + self._cohort_condition())

    def sessions_condition(self, project_id: str, since: str, until: str) -> str:
        """`` AND …`` for a query on ``sessions``; a page filter looks up the sessions that viewed the page
        between ``since`` and ``until`` (SQL expressions) in ``events``."""
        active = self._equalities()
        sql = self._bots() + "".join(f" AND {SESSION_FIELDS[name]} = %(filter_{name})s"
                                     for name in active if name != "page") + self._cohort_condition()
        if "page" in active:
            sql += (f" AND session_id IN (SELECT session_id FROM {project_database(project_id)}.events"
                    f" WHERE timestamp >= {since} AND timestamp < {until} AND url_path = %(filter_page)s)")
        if self.where or self.goal:
            sql += (f" AND session_id IN (SELECT session_id FROM {project_database(project_id)}.events"
                    f" WHERE timestamp >= {since} AND timestamp < {until}{self._where()})")
        return sql


NONE = Filters()
