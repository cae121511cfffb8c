"""Cohorts: a project's saved groups of persons, defined by what they did and by their traits.

A cohort is part of the project's configuration (``cohorts``, set through the admin API or ``headwater
project configure``)::

    {"name": "repeat-buyers", "match": "all", "rules": [
        {"did": "Order Completed", "at_least": 2, "within_days": 30},
        {"did_not": "Refund Requested", "within_days": 30},
        {"trait": "plan", "in": ["pro", "enterprise"]}]}

Rule kinds (:data:`KINDS`):

- ``did``: the event at least ``at_least`` times (default 1) in the last ``within_days`` days (default 30);
- ``did_not``: not the event in the last ``within_days`` days (of the persons seen in that time);
- ``trait``: the trait's latest value, from the person's ``identify`` calls, ``equals`` a value, is
  ``in`` a list, or ``exists``;
- ``imported``: a row of an imported table (``headwater import``: ``imported_<name>``) whose ``column``
  ``equals`` a value, is ``in`` a list, is ``gt`` or ``lt`` a number, or ``exists``, holds one of the
  person's user ids in its column ``by`` (default ``user_id``). For example "in an organization of more
  than 500 people": ``{"imported": "user_organizations", "by": "external_id", "column": "size",
  "gt": 500}``, with a table (or a view at the source) holding each user's organization size.

``match`` combines them: ``all`` (AND, the default) or ``any`` (OR). A cohort is computed in ClickHouse
when a query uses it, so it is as fresh as the events: as a filter (``Filters(cohort=…)``) it keeps the
events and sessions of its members' ids, and :func:`size` counts them. Members are persons
(:mod:`analytics.persons`), or ids when the query counts ids. "The last N days" are counted back from
the moment the query runs.
"""

from __future__ import annotations

import dataclasses
import re

import orjson

from analytics.persons import join_of, person_map, who_of
from headwater.clickhouse import project_database

KINDS = ("did", "did_not", "trait", "imported")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
MATCHES = ("all", "any")
MAX_RULES = 10
MAX_COHORTS = 20  # the People page computes each one's size as it is drawn
MAX_TEXT = 200
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")


@dataclasses.dataclass(frozen=True)
class Cohort:
    """A checked cohort of one project (see the module); :func:`parse` makes one."""

    project_id: str
    name: str
    match: str
    rules: tuple[dict, ...]
    prefix: str = "cohort"  # of its parameters' names: several cohorts in one query need their own

    def persons_sql(self, count_ids: bool) -> str:
        """``SELECT who FROM …``: the members' person hashes (their ids' hashes with ``count_ids``)."""
        db = project_database(self.project_id)
        p = self.prefix
        columns = ",\n        ".join(f"{_column(p, i, rule, db)} AS r{i}" for i, rule in enumerate(self.rules))
        joined = f" {'AND' if self.match == 'all' else 'OR'} "
        tests = joined.join(_test(p, i, rule) for i, rule in enumerate(self.rules))
        window = f"timestamp >= now64(3) - toIntervalDay(%({p}_days)s)"
        identifies = " OR type = 'identify'" if any("trait" in rule for rule in self.rules) else ""
        # an imported row names a user id: every event that carries one counts, however old
        identifies += " OR user_id != ''" if any("imported" in rule for rule in self.rules) else ""
        return f"""SELECT who FROM (
    SELECT {who_of(count_ids)} AS who,
        {columns}
    FROM {db}.events{join_of(self.project_id, count_ids)}
    WHERE {window}{identifies}
    GROUP BY who
    HAVING {tests}
)"""

    def ids_sql(self, count_ids: bool) -> str:
        """The hashes of the members' ids: every id of a member person (``count_ids``: the member ids)."""
        members = self.persons_sql(count_ids)
        if count_ids:
            return members
        # a merged person's hash is its own id's, so the members are ids too; their other ids come from the map
        return (f"SELECT who FROM ({members}) UNION ALL SELECT visitor_hash FROM "
                f"{person_map(self.project_id)} WHERE merged_into IN ({members})")

    def ids_condition(self, count_ids: bool) -> str:
        """`` AND visitor_hash IN …``: the events or sessions of the members' ids, for any query on
        ``events`` or ``sessions`` (they need no join of their own)."""
        return f" AND visitor_hash IN ({self.ids_sql(count_ids)})"

    def params(self) -> dict:
        p = self.prefix
        params: dict = {f"{p}_days": max((rule.get("within_days", 30) for rule in self.rules
                                          if "did" in rule or "did_not" in rule), default=1)}
        for i, rule in enumerate(self.rules):
            if "imported" in rule:
                given = next((rule[op] for op in ("equals", "in", "gt", "lt") if op in rule), None)
                params[f"{p}_{i}_value"] = tuple(given) if isinstance(given, list) else given
            elif "did" in rule or "did_not" in rule:
                params[f"{p}_{i}_event"] = rule.get("did", rule.get("did_not"))
                params[f"{p}_{i}_days"] = rule.get("within_days", 30)
                params[f"{p}_{i}_times"] = rule.get("at_least", 1)
            else:
                params[f"{p}_{i}_trait"] = rule["trait"]
                if "equals" in rule:
                    params[f"{p}_{i}_value"] = orjson.dumps(rule["equals"]).decode()
                if "in" in rule:
                    params[f"{p}_{i}_values"] = tuple(orjson.dumps(v).decode() for v in rule["in"])
        return params


def membership(cohorts: list[Cohort], count_ids: bool) -> tuple[str, dict]:
    """A breakdown by cohorts: an expression giving each event (or session) one row per cohort its id's
    person is a member of (none: the row is left out), named by the cohort; and its parameters. The
    cohorts must have distinct prefixes (:func:`for_breakdown`)."""
    if not cohorts:
        raise ValueError("a breakdown by cohorts needs at least one cohort")
    tests = ", ".join(f"if(visitor_hash IN ({c.ids_sql(count_ids)}), %({c.prefix}_name)s, '')" for c in cohorts)
    params = {k: v for c in cohorts for k, v in {**c.params(), f"{c.prefix}_name": c.name}.items()}
    return f"arrayJoin(arrayFilter(c -> c != '', [{tests}]))", params


def for_breakdown(project_id: str, cohorts: list[dict], names: list[str]) -> list[Cohort]:
    """The named cohorts of the project, each with its own parameter prefix."""
    return [dataclasses.replace(find(project_id, cohorts, name), prefix=f"by{j}") for j, name in enumerate(names)]


def _column(p: str, i: int, rule: dict, db: str) -> str:
    if "imported" in rule:
        test = {"equals": "= %(v)s", "in": "IN %(v)s", "gt": "> %(v)s", "lt": "< %(v)s", "exists": "IS NOT NULL"}
        op = next(name for name in test if name in rule)
        column = f"`{rule['column']}` {test[op].replace('%(v)s', f'%({p}_{i}_value)s')}"
        return (f"max(user_id != '' AND user_id IN (SELECT toString(`{rule.get('by', 'user_id')}`) "
                f"FROM {db}.`imported_{rule['imported']}` FINAL WHERE {column}))")
    if "trait" in rule:
        return (f"argMaxIf(JSONExtractRaw(traits, %({p}_{i}_trait)s), timestamp, type = 'identify' "
                f"AND JSONHas(traits, %({p}_{i}_trait)s))")
    return f"countIf(event = %({p}_{i}_event)s AND timestamp >= now64(3) - toIntervalDay(%({p}_{i}_days)s))"


def _test(p: str, i: int, rule: dict) -> str:
    if "imported" in rule:
        return f"r{i} = 1"
    if "did" in rule:
        return f"r{i} >= %({p}_{i}_times)s"
    if "did_not" in rule:
        return f"r{i} = 0"
    if "equals" in rule:
        return f"r{i} = %({p}_{i}_value)s"
    if "in" in rule:
        return f"r{i} IN %({p}_{i}_values)s"
    return f"r{i} != ''"


def size_sql(cohort: Cohort, count_ids: bool) -> tuple[str, dict]:
    """How many members the cohort has now, and the parameters."""
    return f"SELECT count() AS members FROM ({cohort.persons_sql(count_ids)})", cohort.params()


def parse(project_id: str, raw: dict) -> Cohort:
    """A cohort from a checked definition (:func:`check_cohorts` found no problem in it)."""
    return Cohort(project_id, raw["name"], raw.get("match", "all"), tuple(raw["rules"]))


def find(project_id: str, cohorts: list[dict], name: str) -> Cohort:
    """The project's cohort called ``name``; raises ``ValueError`` naming the ones there are."""
    for raw in cohorts:
        if isinstance(raw, dict) and raw.get("name") == name and not check_cohort(raw):
            return parse(project_id, raw)
    known = ", ".join(str(c.get("name")) for c in cohorts if isinstance(c, dict)) or "none"
    raise ValueError(f"the project has no cohort {name[:80]!r} (it has: {known})")


def check_cohorts(raw: object) -> list[str]:
    """The problems of a project's ``cohorts``."""
    if not isinstance(raw, list):
        return ["cohorts must be a list"]
    if len(raw) > MAX_COHORTS:
        return [f"a project has at most {MAX_COHORTS} cohorts"]
    problems = [p for cohort in raw for p in check_cohort(cohort)]
    names = [str(c.get("name")) for c in raw if isinstance(c, dict)]
    problems += [f"cohort {name!r} is defined twice" for name in sorted({n for n in names if names.count(n) > 1})]
    return problems


def check_cohort(raw: object) -> list[str]:
    if not isinstance(raw, dict):
        return ["a cohort must be an object with a name and rules"]
    name = raw.get("name")
    where = f"cohort {name!r}" if isinstance(name, str) else "a cohort"
    problems = [f"{where}: {key} is not a field (name, match, rules)" for key in raw
                if key not in ("name", "match", "rules")]
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(f"{where}: name must be 1-80 letters, digits, spaces, '_', '.' or '-'")
    if raw.get("match", "all") not in MATCHES:
        problems.append(f"{where}: match must be all or any")
    rules = raw.get("rules")
    if not isinstance(rules, list) or not 1 <= len(rules) <= MAX_RULES:
        return [*problems, f"{where}: rules must be a list of 1 to {MAX_RULES} rules"]
    return problems + [f"{where}, rule {i + 1}: {p}" for i, rule in enumerate(rules) for p in _check_rule(rule)]


def _check_rule(rule: object) -> list[str]:
    if not isinstance(rule, dict):
        return ["a rule must be an object"]
    kinds = [kind for kind in KINDS if kind in rule]
    if len(kinds) != 1:
        return [f"a rule has exactly one of {', '.join(KINDS)}"]
    kind = kinds[0]
    allowed = {"did": {"did", "at_least", "within_days"}, "did_not": {"did_not", "within_days"},
               "trait": {"trait", "equals", "in", "exists"},
               "imported": {"imported", "by", "column", "equals", "in", "gt", "lt", "exists"}}[kind]
    problems = [f"{key} does not go with {kind}" for key in rule if key not in allowed]
    if not isinstance(rule[kind], str) or not 0 < len(rule[kind]) <= MAX_TEXT:
        problems.append(f"{kind} must be a name of 1 to {MAX_TEXT} characters")
    problems += _whole(rule, "within_days", 1, 3650) + _whole(rule, "at_least", 1, 1_000_000)
    if kind == "imported":
        return problems + _imported_rule(rule)
    if kind == "trait":
        tests = [test for test in ("equals", "in", "exists") if test in rule]
        if len(tests) != 1:
            problems.append("a trait rule has exactly one of equals, in, exists")
        elif "in" in rule and (not isinstance(rule["in"], list) or not 1 <= len(rule["in"]) <= 100):
            problems.append("in must be a list of 1 to 100 values")
        elif "exists" in rule and rule["exists"] is not True:
            problems.append("exists must be true")
        elif "equals" in rule and isinstance(rule["equals"], dict | list):
            problems.append("equals must be a text, number, true, false or null")
    return problems


def _imported_rule(rule: dict) -> list[str]:
    problems = [f"{name} must be a column name (letters, digits, _)" for name in ("column", "by")
                if name in rule or name == "column"
                if not isinstance(rule.get(name), str) or not IDENTIFIER.match(rule[name])]
    if not IDENTIFIER.match(str(rule["imported"])) or not str(rule["imported"]).islower():
        problems.append("imported must be the name of an imported table (imported_<name>)")
    tests = [test for test in ("equals", "in", "gt", "lt", "exists") if test in rule]
    if len(tests) != 1:
        return [*problems, "an imported rule has exactly one of equals, in, gt, lt, exists"]
    value = rule[tests[0]]
    if tests[0] in ("gt", "lt") and (isinstance(value, bool) or not isinstance(value, int | float)):
        problems.append(f"{tests[0]} must be a number")
    elif tests[0] == "in" and (not isinstance(value, list) or not 1 <= len(value) <= 100
                               or any(isinstance(v, dict | list | bool) or v is None for v in value)):
        problems.append("in must be a list of 1 to 100 texts or numbers")
    elif tests[0] == "equals" and (isinstance(value, dict | list | bool) or value is None):
        problems.append("equals must be a text or a number")
    elif tests[0] == "exists" and value is not True:
        problems.append("exists must be true")
    return problems


def _whole(rule: dict, name: str, low: int, high: int) -> list[str]:
    value = rule.get(name, low)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        return [f"{name} must be a whole number from {low} to {high}"]
    return []
