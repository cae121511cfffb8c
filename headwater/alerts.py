"""Alert rules: what a project asks to be told about, and the alerts the alerts role writes.

A project's ``alerts`` setting holds its rules, each of a kind in :data:`RULE_KINDS`:

- ``event``: an event matching ``when`` (the flow's condition language, :mod:`headwater.conditions`)
  happens; for example ``Order Completed`` with ``properties.revenue`` over 1,000. The subject is the
  event's visitor.
- ``visitor``: a visitor starts a session whose first event, with the traits the person's latest
  ``identify`` gave (``traits.*``, and ``traits.email_domain`` derived from ``traits.email``), matches
  ``when``; with ``cohort``, only a member of that cohort of the project (:mod:`analytics.cohorts`);
  with ``after_days``, only when the person's previous event is at least that many days older ("an
  important visitor returns"). The subject is the person; it fires once per session.
- ``threshold``: the number of events matching ``when`` (``count: events``), or of distinct ids
  (``visitors``) or persons (``persons``) that sent them, in a window of ``window_s`` (tumbling, or
  hopping every ``every_s``), on event time, compared when the window closes with ``above`` or
  ``below`` a number, or with the same window ``change.against`` a day or a week earlier
  (``change.drop_pct`` or ``change.rise_pct``). The subject is the window.

A person is an id's person as the identity role has merged it (:mod:`headwater.identity`) when the
alerts role reads the event; an id never merged is a person of its own. The subject of an event rule is
the event's person too.

Every rule may set ``cooldown_s``: after an alert, the same rule and subject stay quiet that long (event
time). ``quiet_hours`` (``from``, ``to`` as ``HH:MM``, ``tz``) marks the alerts raised in those hours
``quiet``: they are recorded, and channels do not send them.

An alert is an :class:`headwater.envelope.Envelope` on ``headwater.alerts``: a ``track`` event named
``Alert`` whose ``messageId`` is the alert's id, the same however often the role works it out (so a
receiver can drop a repeat), and whose ``properties`` say what fired and why. Channels are the
project's destinations that read alerts (``"source": "alerts"``); the indexer keeps them in the
project's ``alerts`` table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from datetime import time
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from headwater.conditions import TYPES, ConditionError, Matcher, compile_condition
from headwater.envelope import Envelope
from headwater.timeutil import from_epoch_ms, iso_ms

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
MAX_RULES = 150
MAX_COOLDOWN_S = 7 * 86_400
MAX_HOPS = 60
WINDOW_S = (60, 86_400)  # the shortest and longest threshold window
AGAINST = {"day": 86_400_000, "week": 7 * 86_400_000}
COUNTS = ("events", "visitors", "persons")
ALERT_EVENT = "Alert"
REQUEST_ID = "alert"


class AlertsError(ValueError):
    """A project's ``alerts`` setting has problems; ``problems`` names each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Rule:
    """What every kind of rule has."""

    name: str
    kind: str
    when: Matcher
    cooldown_ms: int


@dataclasses.dataclass(frozen=True)
class EventRule(Rule):
    pass


@dataclasses.dataclass(frozen=True)
class VisitorRule(Rule):
    after_ms: int  # 0: every session start
    cohort: str = ""  # only the members of this cohort of the project ("": anyone)


@dataclasses.dataclass(frozen=True)
class ThresholdRule(Rule):
    window_ms: int
    every_ms: int  # == window_ms: tumbling
    above: int | None
    below: int | None
    against_ms: int  # a change against the window this long before (0: a fixed threshold)
    drop_pct: float | None
    rise_pct: float | None
    count: str = "events"  # what a window counts: events, or distinct visitors (ids) or persons

    @property
    def unit(self) -> str:
        return self.count

    @property
    def unique(self) -> bool:
        """Whether the rule counts who sent the events (ids or persons), not the events."""
        return self.count != "events"

    def starts(self, at_ms: int) -> range:
        """The start of every window holding the time ``at_ms`` (epoch-aligned)."""
        last = at_ms - at_ms % self.every_ms
        return range(last - self.window_ms + self.every_ms, last + 1, self.every_ms)

    def crossed(self, count: int, before: int | None) -> str:
        """Why a closed window's ``count`` raises an alert ("" when it does not); ``before`` is the
        count of the window ``against_ms`` earlier (``None``: that window was not seen)."""
        if self.above is not None and count > self.above:
            return f"{count} {self.unit}, above {self.above}"
        if self.below is not None and count < self.below:
            return f"{count} {self.unit}, below {self.below}"
        if not self.against_ms or not before:
            return ""
        change = 100.0 * (count - before) / before
        if self.drop_pct is not None and change <= -self.drop_pct:
            return f"{count} {self.unit}, {-change:.0f}% fewer than the {count_name(self.against_ms)} before ({before})"
        if self.rise_pct is not None and change >= self.rise_pct:
            return f"{count} {self.unit}, {change:.0f}% more than the {count_name(self.against_ms)} before ({before})"
        return ""


def count_name(against_ms: int) -> str:
    return next(name for name, ms in AGAINST.items() if ms == against_ms)


@dataclasses.dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    zone: ZoneInfo

    def holds(self, at_ms: int) -> bool:
        local = from_epoch_ms(at_ms).astimezone(self.zone).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # over midnight


R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class RuleIndex(Generic[R]):
    """Rules (or groups of them) by what an event must be for their condition to hold (:func:`needs`),
    so an event is tested against those it may match only: of its name (a ``track``), of its type, and
    those that may match anything; and each with what remains to test once the index chose it."""

    by_event: dict[str, tuple[tuple[R, Matcher], ...]]
    by_type: dict[str, tuple[tuple[R, Matcher], ...]]
    always: tuple[tuple[R, Matcher], ...]

    @classmethod
    def of(cls, rules: list[tuple[R, object, Matcher]]) -> RuleIndex[R]:
        """The index of ``(rule, its condition as written, its condition compiled)``."""
        by_event: dict[str, list[tuple[R, Matcher]]] = {}
        by_type: dict[str, list[tuple[R, Matcher]]] = {}
        always: list[tuple[R, Matcher]] = []
        for rule, raw_when, when in rules:
            need = needs(raw_when)
            if need is None:
                always.append((rule, when))
                continue
            kind, keys, rest = need
            test = _anything if rest is None else compile_condition(rest)
            for key in keys:
                (by_event if kind == "event" else by_type).setdefault(key, []).append((rule, test))
        return cls({k: tuple(v) for k, v in by_event.items()}, {k: tuple(v) for k, v in by_type.items()},
                   tuple(always))

    def candidates(self, event: dict[str, Any]) -> tuple[tuple[R, Matcher], ...]:
        """The rules the event may match, each with the test left to pass."""
        kind = event.get("type") or "track"
        found = self.always + self.by_type.get(kind, ()) if isinstance(kind, str) else self.always
        name = event.get("event")
        if kind == "track" and isinstance(name, str):
            found += self.by_event.get(name, ())
        return found


def _anything(event: dict[str, Any]) -> bool:
    return True


def trait_names(raw: object) -> set[str]:
    """The traits a condition tests (``traits.NAME…`` fields); ``email`` for ``traits.email_domain``."""
    if isinstance(raw, list):
        return set().union(*(trait_names(part) for part in raw)) if raw else set()
    if not isinstance(raw, dict):
        return set()
    field = raw.get("field")
    if isinstance(field, str) and field.startswith("traits."):
        name = field.split(".")[1]
        return {"email" if name == "email_domain" else name}
    return set().union(*(trait_names(value) for key, value in raw.items() if key in ("all", "any", "not")))


def needs(raw: object) -> tuple[str, frozenset[str], object] | None:
    """What an event must be for the condition ``raw`` to hold, and what else it must pass:
    ``("event", names, rest)``, a ``track`` of one of these names; ``("type", types, rest)``, one of
    these types; ``rest`` a condition, or ``None`` for nothing more. ``None``: anything may hold."""
    if not isinstance(raw, dict) or len(raw) != 1:
        return None
    (test, value), = raw.items()
    values = value if isinstance(value, list) else [value]
    if test == "event" and all(isinstance(v, str) and "*" not in v for v in values):
        return "event", frozenset(values), None
    if test == "type" and all(isinstance(v, str) for v in values):
        return "type", frozenset(values), None
    if test == "all" and isinstance(value, list):
        for i, part in enumerate(value):
            need = needs(part)
            if need is not None:
                others = [*value[:i], *value[i + 1:], *([need[2]] if need[2] is not None else [])]
                rest = None if not others else others[0] if len(others) == 1 else {"all": others}
                return need[0], need[1], rest
    return None


@dataclasses.dataclass(frozen=True)
class CountGroup:
    """The threshold rules with the same condition: it is tested once an event, and a matching event is
    counted once in a bucket of ``bucket_ms`` (the greatest common divisor of the rules' hops, so a
    bucket lies in the same windows of each rule), then spread over each rule's windows a poll at a time."""

    key: str  # the condition, as canonical JSON, and the rules' names: another set of rules is another group
    when: Matcher
    rules: tuple[ThresholdRule, ...]
    bucket_ms: int

    @property
    def unique(self) -> bool:
        """Whether a rule of the group counts distinct ids or persons (the group then notes who came)."""
        return any(rule.unique for rule in self.rules)


def count_groups(rules: list[tuple[ThresholdRule, object]]) -> list[tuple[CountGroup, object, Matcher]]:
    grouped: dict[str, list[ThresholdRule]] = {}
    raw_of: dict[str, object] = {}
    for rule, raw_when in rules:
        key = orjson.dumps(raw_when, option=orjson.OPT_SORT_KEYS).decode()
        grouped.setdefault(key, []).append(rule)
        raw_of[key] = raw_when
    return [(CountGroup(f"{key}#{','.join(r.name for r in members)}", members[0].when, tuple(members),
                        math.gcd(*(r.every_ms for r in members))), raw_of[key], members[0].when)
            for key, members in grouped.items()]


@dataclasses.dataclass(frozen=True)
class Alerts:
    """A project's rules, by kind (event and threshold rules indexed for the events they may match),
    and its quiet hours."""

    rules: tuple[Rule, ...] = ()
    quiet: QuietHours | None = None
    events: RuleIndex[EventRule] = RuleIndex({}, {}, ())
    counts: RuleIndex[CountGroup] = RuleIndex({}, {}, ())
    visitors: tuple[VisitorRule, ...] = ()
    thresholds: tuple[ThresholdRule, ...] = ()
    traits: frozenset[str] = frozenset()  # the traits the visitor rules test (email for email_domain)
    cohorts: frozenset[str] = frozenset()  # the cohorts the visitor rules name


def _whole(raw: dict, key: str, low: int, high: int, problems: list[str], where: str, default: int = 0) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append(f"{where}.{key} must be a whole number from {low} to {high}")
        return default
    return value


def _event_rule(raw: dict, base: dict, problems: list[str], where: str) -> Rule:
    _unknown(raw, (), problems, where)
    return EventRule(**base)


def _visitor_rule(raw: dict, base: dict, problems: list[str], where: str) -> Rule:
    _unknown(raw, ("after_days", "cohort"), problems, where)
    after_days = _whole(raw, "after_days", 0, 365, problems, where)
    cohort = raw.get("cohort", "")
    if not isinstance(cohort, str) or len(cohort) > 80:
        problems.append(f"{where}.cohort must be the name of one of the project's cohorts")
        cohort = ""
    return VisitorRule(**base, after_ms=after_days * 86_400_000, cohort=cohort)


def _threshold_rule(raw: dict, base: dict, problems: list[str], where: str) -> Rule:
    _unknown(raw, ("window_s", "every_s", "count", "above", "below", "change"), problems, where)
    if raw.get("count", "events") not in COUNTS:
        problems.append(f"{where}.count must be one of {', '.join(COUNTS)}")
    window_s = _whole(raw, "window_s", *WINDOW_S, problems, where, default=WINDOW_S[0])
    every_s = _whole(raw, "every_s", 60, window_s, problems, where, default=window_s)
    if window_s % every_s:
        problems.append(f"{where}.every_s must divide window_s ({window_s})")
    elif window_s // every_s > MAX_HOPS:
        problems.append(f"{where}: window_s / every_s must be at most {MAX_HOPS} (an event counts in each window)")
    tests = [key for key in ("above", "below", "change") if key in raw]
    if len(tests) != 1:
        problems.append(f"{where} needs exactly one of above, below, change")
    above = _whole(raw, "above", 0, 10**12, problems, where) if "above" in raw else None
    below = _whole(raw, "below", 1, 10**12, problems, where) if "below" in raw else None
    against_ms, drop, rise = 0, None, None
    if "change" in raw:
        against_ms, drop, rise = _change(raw["change"], problems, f"{where}.change")
    return ThresholdRule(**base, window_ms=window_s * 1000, every_ms=every_s * 1000, above=above, below=below,
                         against_ms=against_ms, drop_pct=drop, rise_pct=rise,
                         count=raw.get("count", "events") if raw.get("count") in COUNTS else "events")


def _change(raw: object, problems: list[str], where: str) -> tuple[int, float | None, float | None]:
    """``(against_ms, drop_pct, rise_pct)`` of a threshold's ``change``."""
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object: against (day or week) and drop_pct or rise_pct")
        return 0, None, None
    _unknown(raw, ("against", "drop_pct", "rise_pct"), problems, where, base=())
    against = raw.get("against")
    against_ms = AGAINST[against] if isinstance(against, str) and against in AGAINST else 0
    if not against_ms:
        problems.append(f"{where}.against must be day or week")
    given = [key for key in ("drop_pct", "rise_pct") if key in raw]
    if len(given) != 1:
        problems.append(f"{where} needs exactly one of drop_pct, rise_pct")
        return against_ms, None, None
    key, value = given[0], raw[given[0]]
    high = 100 if key == "drop_pct" else 10_000
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= high:
        problems.append(f"{where}.{key} must be a number from 1 to {high}")
        return against_ms, None, None
    return against_ms, float(value) if key == "drop_pct" else None, float(value) if key == "rise_pct" else None


EVERY_EVENT = {"type": list(TYPES)}
RULE_KINDS = {"event": _event_rule, "visitor": _visitor_rule, "threshold": _threshold_rule}
COMMON = ("name", "kind", "when", "cooldown_s")


def _unknown(raw: dict, own: tuple[str, ...], problems: list[str], where: str, base: tuple = COMMON) -> None:
    allowed = (*base, *own)
    problems += [f"{where}.{key} is not a setting ({', '.join(allowed)})" for key in raw if key not in allowed]


def _rule(raw: object, i: int, problems: list[str]) -> Rule | None:
    where = f"alerts.rules[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object")
        return None
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{where}.name must match {NAME.pattern}")
    else:
        where = f"alerts.rules[{i}] ({name})"
    if kind not in RULE_KINDS:
        problems.append(f"{where}.kind must be one of {', '.join(RULE_KINDS)}")
        return None
    try:
        when = compile_condition(raw.get("when", EVERY_EVENT), f"{where}.when")
    except ConditionError as exc:
        problems += exc.problems
        return None
    if kind == "event" and "when" not in raw:
        problems.append(f"{where}.when is needed: which events raise an alert")
    cooldown_ms = _whole(raw, "cooldown_s", 0, MAX_COOLDOWN_S, problems, where) * 1000
    base = {"name": name if isinstance(name, str) else "", "kind": kind, "when": when, "cooldown_ms": cooldown_ms}
    return RULE_KINDS[kind](raw, base, problems, where)


def _quiet(raw: object, problems: list[str]) -> QuietHours | None:
    if raw is None:
        return None
    where = "alerts.quiet_hours"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object: from, to (HH:MM) and tz")
        return None
    _unknown(raw, ("from", "to", "tz"), problems, where, base=())
    bounds = []
    for key in ("from", "to"):
        value = raw.get(key)
        try:
            if not isinstance(value, str) or not re.fullmatch(r"\d\d:\d\d", value):
                raise ValueError
            bounds.append(time.fromisoformat(value))
        except ValueError:
            problems.append(f"{where}.{key} must be a time of day as HH:MM")
    try:
        zone = ZoneInfo(raw.get("tz", "UTC"))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        problems.append(f"{where}.tz must be a time zone, such as Europe/Berlin")
        return None
    return QuietHours(bounds[0], bounds[1], zone) if len(bounds) == 2 else None


def parse_alerts(raw: object) -> Alerts:
    """A project's ``alerts`` setting, checked; raises :class:`AlertsError` naming every problem."""
    if raw in (None, {}):
        return Alerts()
    if not isinstance(raw, dict):
        raise AlertsError(["alerts must be an object: rules and quiet_hours"])
    problems: list[str] = []
    _unknown(raw, ("rules", "quiet_hours"), problems, "alerts", base=())
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list) or len(rules_raw) > MAX_RULES:
        raise AlertsError([*problems, f"alerts.rules must be a list of at most {MAX_RULES} rules"])
    rules = [rule for i, entry in enumerate(rules_raw) if (rule := _rule(entry, i, problems)) is not None]
    names = [str(entry["name"]) for entry in rules_raw
             if isinstance(entry, dict) and isinstance(entry.get("name"), str)]
    problems += [f"alerts.rules: the name {name!r} is used twice" for name in sorted(set(names))
                 if names.count(name) > 1]
    quiet = _quiet(raw.get("quiet_hours"), problems)
    if problems:
        raise AlertsError(problems)
    when = {entry.get("name"): entry.get("when", EVERY_EVENT) for entry in rules_raw if isinstance(entry, dict)}
    groups = count_groups([(r, when.get(r.name)) for r in rules if isinstance(r, ThresholdRule)])
    return Alerts(tuple(rules), quiet,
                  events=RuleIndex.of([(r, when.get(r.name), r.when) for r in rules if isinstance(r, EventRule)]),
                  counts=RuleIndex.of(groups), visitors=tuple(r for r in rules if isinstance(r, VisitorRule)),
                  thresholds=tuple(r for r in rules if isinstance(r, ThresholdRule)),
                  traits=frozenset(name for r in rules if isinstance(r, VisitorRule)
                                   for name in trait_names(when.get(r.name))),
                  cohorts=frozenset(r.cohort for r in rules if isinstance(r, VisitorRule) and r.cohort))


def check_alerts(raw: object, cohorts: list[dict] | None = None) -> list[str]:
    """The problems of a project's ``alerts`` setting; with the project's ``cohorts``, also a visitor
    rule's cohort the project does not have."""
    try:
        alerts = parse_alerts(raw)
    except AlertsError as exc:
        return exc.problems
    if cohorts is None:
        return []
    known = {c.get("name") for c in cohorts if isinstance(c, dict)}
    return [f"alerts.rules ({r.name}).cohort: the project has no cohort {r.cohort!r} "
            f"(it has: {', '.join(sorted(str(n) for n in known)) or 'none'})"
            for r in alerts.visitors if r.cohort and r.cohort not in known]


def alert_id(project_id: str, rule: str, subject: str, cause: str) -> str:
    """The alert's id: the same for the same rule, subject and cause (a window's start, or the
    message id of the event that raised it)."""
    digest = hashlib.blake2b(f"{project_id}|{rule}|{subject}|{cause}".encode(), digest_size=16).hexdigest()
    return f"alert_{digest}"


def alert_envelope(project_id: str, rule: Rule, subject: str, cause: str, at_ms: int, now_ms: int, text: str,
                   quiet: bool, details: dict[str, Any]) -> Envelope:
    """The alert as the alerts topic holds it (see the module)."""
    ident = alert_id(project_id, rule.name, subject, cause)
    properties = {"rule": rule.name, "kind": rule.kind, "subject": subject, "text": text, "quiet": quiet, **details}
    event = {"type": "track", "event": ALERT_EVENT, "messageId": ident, "anonymousId": subject or rule.name,
             "timestamp": iso_ms(at_ms), "properties": properties}
    return Envelope(project_id, ident, now_ms, REQUEST_ID, event)


def test_alert(project_id: str, rule: Rule, now_ms: int, nonce: str) -> Envelope:
    """An alert of ``rule`` sent on request (the dashboard's and the admin API's "send a test"), to
    check its channels: ``test`` set, never quiet, its id new each time."""
    return alert_envelope(project_id, rule, "", f"test:{nonce}", now_ms, now_ms,
                          f"{rule.name}: a test alert, sent on request", False, {"test": True})
