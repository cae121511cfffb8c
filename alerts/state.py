"""One project's alerting state and rules, with no Kafka in sight: events go in, alerts and the changed
state keys come out (:class:`ProjectAlerts`).

The state is a flat map of keys (see :func:`state_key`), so that each change is one changelog record:

- ``w|RULE|START``: the events (or, with ``count: visitors`` or ``persons``, the distinct ids or
  persons) a threshold rule counted in the window starting at ``START`` (ms);
- ``u|RULE|START|WHO``: an id or person such a rule has counted in that window (one key each,
  deleted with the window; in memory, :attr:`ProjectAlerts.members` indexes them);
- ``n|RULE``: ``[next window to close, first window counted]`` of a threshold rule;
- ``m``: the project's latest event time, the watermark's base;
- ``c|RULE|SUBJECT``: the event time until which the rule stays quiet for the subject (cooldown);
- ``s|PERSON``: the time of the person's latest event, to :data:`SEEN_STEP_MS` (visitor rules with
  ``after_days``: a day at least, so a return is judged to the 10 minutes, and a busy visitor's events
  do not each write a changelog record);
- ``t|ID``: the traits the latest ``identify`` calls gave the user id and anonymous id, only those the
  visitor rules test, and only values of at most :data:`MAX_TRAIT_BYTES` as JSON (a longer one is left
  out), so a flood of ``identify`` calls cannot fill the role's memory with what no rule reads;
- ``r|RULE``: ``[minute, alerts]``: how many alerts the rule raised in the latest minute (event time),
  at most ``alerts_max_per_rule_per_minute``.

A window closes once the watermark passes its end: the project's latest event time (never later than
the clock) less ``alerts_grace_s``, or the clock less the grace when the project has been idle for
``alerts_idle_s``. An event older than the next window to close is late and not counted.

Who is a person, and who is in a cohort, the role looks up (:class:`Lookups`): these are not its
state, but the identity role's (persons) and ClickHouse's (cohorts), read as the role goes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Protocol

import orjson

from headwater.alerts import Alerts, CountGroup, Rule, ThresholdRule, VisitorRule, alert_envelope
from headwater.envelope import Envelope
from headwater.timeutil import epoch_ms, iso_ms

Key = str
DELETED = None  # a changed key whose record becomes a tombstone


@dataclasses.dataclass
class Limits:
    grace_ms: int
    idle_ms: int
    max_keys: int
    max_per_minute: int = 60


class Lookups(Protocol):
    """What the rules look up beyond the role's own state."""

    def person_of(self, project_id: str, distinct_id: str) -> str:
        """The person the id belongs to now (the id itself when it was never merged)."""

    def in_cohort(self, project_id: str, cohort: str, distinct_id: str) -> bool:
        """Whether the id's person is a member of the project's cohort (as far as known: ``False``
        while the cohort's members have not been loaded)."""


class NoLookups:
    """Every id a person of its own, and no cohort with members."""

    def person_of(self, project_id: str, distinct_id: str) -> str:
        return distinct_id

    def in_cohort(self, project_id: str, cohort: str, distinct_id: str) -> bool:
        return False


def state_key(*parts: object) -> Key:
    return "|".join(str(p) for p in parts)


def event_time(envelope: Envelope, now_ms: int, grace_ms: int) -> int:
    """The event's time, never later than the clock allows (a sender's future time must not close
    every window at once)."""
    at = epoch_ms(envelope.event.get("timestamp")) or envelope.received_at_ms
    return min(at, now_ms + grace_ms)


MAX_TRAIT_BYTES = 1000
SEEN_STEP_MS = 10 * 60_000  # how far a person's latest event moves on before it is written again


def kept_traits(traits: dict, names: frozenset[str]) -> dict:
    """The traits the rules test, each small enough to keep."""
    return {name: value for name, value in traits.items()
            if name in names and len(orjson.dumps(value, default=str)) <= MAX_TRAIT_BYTES}


def email_domain(traits: dict) -> str:
    email = traits.get("email")
    return email.rpartition("@")[2].lower() if isinstance(email, str) and "@" in email else ""


def entry_page(event: dict) -> dict:
    context = event.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    return page if isinstance(page, dict) else {}


class ProjectAlerts:
    """A project's state (``values``: key → JSON-able value) and what its rules make of events, with
    ``lookups`` for persons and cohorts."""

    def __init__(self, project_id: str, limits: Limits, lookups: Lookups | None = None) -> None:
        self.project_id = project_id
        self.limits = limits
        self.lookups: Lookups = lookups or NoLookups()
        self.values: dict[Key, Any] = {}
        self.changed: dict[Key, Any] = {}
        self.last_input_s = 0.0  # the clock (wall) when the project's last event was read
        self.dropped_keys = 0
        self.late = 0
        self.suppressed = 0
        self.counted: Counter[tuple[str, int]] = Counter()  # (group, bucket) → events, until flush_counts
        self.started: set[str] = set()  # groups whose rules all count already
        self.counting: dict[str, CountGroup] = {}  # the groups of the keys in counted
        self.came: dict[tuple[str, int], set[str]] = {}  # (group, bucket) → visitors, until flush_counts
        self.members: dict[tuple[str, int], set[str]] = {}  # (rule, window start) → its u| keys' ids or persons

    def _set(self, key: Key, value: Any) -> bool:
        if key not in self.values and len(self.values) >= self.limits.max_keys:
            self.dropped_keys += 1
            return False
        self.values[key] = value
        self.changed[key] = value
        return True

    def _delete(self, key: Key) -> None:
        if self.values.pop(key, DELETED) is not DELETED:
            self.changed[key] = DELETED

    def take_changes(self) -> dict[Key, Any]:
        changed, self.changed = self.changed, {}
        return changed

    # events

    def add(self, alerts: Alerts, envelope: Envelope, session_seq: int, now_ms: int) -> list[Envelope]:
        """Count one event; the alerts it raises at once (event and visitor rules)."""
        event = envelope.event
        at = event_time(envelope, now_ms, self.limits.grace_ms)
        if at > self.values.get("m", 0):
            self._set("m", at)
        raised = []
        visitor = envelope.visitor_id
        for group, test in alerts.counts.candidates(event):
            if test(event):
                if group.key not in self.started:
                    self._start(group, at)
                    self.counting[group.key] = group
                self.counted[(group.key, at // group.bucket_ms)] += 1
                if group.unique:
                    self.came.setdefault((group.key, at // group.bucket_ms), set()).add(visitor)
        for rule, test in alerts.events.candidates(event):
            if test(event):
                person = self.lookups.person_of(self.project_id, visitor)
                raised += self._raise(alerts, rule, person, envelope.message_id, at, now_ms,
                                      f"{event.get('event') or event.get('type')} by {person}",
                                      {"message_id": envelope.message_id, "event": event.get("event", ""),
                                       "visitor": visitor})
        if alerts.visitors:
            raised += self._visitor(alerts, alerts.visitors, envelope, session_seq, at, now_ms)
        return raised

    def _start(self, group: CountGroup, at: int) -> None:
        """Counting starts, for each rule of the group not counting yet, with its first window to start
        at or after this event (a whole one)."""
        for rule in group.rules:
            if self.values.get("n|" + rule.name) is None:
                first = -(-at // rule.every_ms) * rule.every_ms
                self._set(state_key("n", rule.name), [first, first])
        self.started.add(group.key)

    def flush_counts(self) -> None:
        """Spread the poll's bucket counts over each rule's windows (of the rules counted them, even if
        the project's rules changed since): one state change per window and poll. A window already
        closed does not take them (late)."""
        for (key, bucket), n in self.counted.items():
            group = self.counting[key]
            at = bucket * group.bucket_ms
            for rule in group.rules:
                progress = self.values.get("n|" + rule.name)
                if progress is None:
                    continue
                for start in rule.starts(at):
                    if start < progress[0]:
                        self.late += n if start >= progress[1] else 0  # before its first window: not late
                        continue
                    window = f"w|{rule.name}|{start}"
                    new = self._newcomers(rule.name, start, self._who(rule, self.came[(key, bucket)])) \
                        if rule.unique else n
                    if new:
                        self._set(window, self.values.get(window, 0) + new)
        self.counted.clear()
        self.came.clear()
        self.counting = {key: group for key, group in self.counting.items() if key in self.started}

    def _who(self, rule: ThresholdRule, visitors: set[str]) -> set[str]:
        if rule.unit != "persons":
            return visitors
        return {self.lookups.person_of(self.project_id, visitor) for visitor in visitors}

    def _newcomers(self, rule: str, start: int, visitors: set[str]) -> int:
        """Note the visitors not counted in the window yet (a key each); how many there were."""
        members = self.members.setdefault((rule, start), set())
        new = 0
        for visitor in visitors - members:
            if self._set(f"u|{rule}|{start}|{visitor}", 1):
                members.add(visitor)
                new += 1
        return new

    def restored(self, key: Key) -> None:
        """Index a key read back from the changelog (a visitor of a window)."""
        if key.startswith("u|"):
            try:
                _, rule, start, visitor = key.split("|", 3)
                self.members.setdefault((rule, int(start)), set()).add(visitor)
            except ValueError:  # not a key this role wrote: left unindexed, as the rest of its kind
                pass

    def _forget_members(self, rule: str, start: int) -> None:
        for visitor in self.members.pop((rule, start), ()):
            self._delete(f"u|{rule}|{start}|{visitor}")

    def _visitor(self, alerts: Alerts, rules: tuple[VisitorRule, ...], envelope: Envelope, session_seq: int, at: int,
                 now_ms: int) -> list[Envelope]:
        event, visitor = envelope.event, envelope.visitor_id
        if event.get("type") == "identify" and isinstance(event.get("traits"), dict) and alerts.traits:
            given = kept_traits(event["traits"], alerts.traits)
            for distinct_id in {str(event.get("userId") or ""), str(event.get("anonymousId") or "")} - {""}:
                key = state_key("t", distinct_id)
                if given:
                    self._set(key, {**self.values.get(key, {}), **given})
        person = self.lookups.person_of(self.project_id, visitor)
        # an id merged since its last event: its time is under the id until the person's own is written
        previous = self.values.get(state_key("s", person), self.values.get(state_key("s", visitor)))
        if any(rule.after_ms for rule in rules) and (previous is None or at >= previous + SEEN_STEP_MS):
            self._set(state_key("s", person), at)
        if session_seq != 1:
            return []
        traits = (self.values.get(state_key("t", str(event.get("userId") or "")))
                  or self.values.get(state_key("t", str(event.get("anonymousId") or "")))
                  or self.values.get(state_key("t", person)) or {})
        seen_as = {**event, "traits": {**traits, "email_domain": email_domain(traits)}}
        raised = []
        for rule in rules:
            if rule.after_ms and (previous is None or at - previous < rule.after_ms):
                continue
            if rule.cohort and not self.lookups.in_cohort(self.project_id, rule.cohort, visitor):
                continue
            if rule.when(seen_as):
                away = f", back after {(at - previous) / 86_400_000:.1f} days" if rule.after_ms and previous else ""
                raised += self._raise(alerts, rule, person, envelope.message_id, at, now_ms,
                                      f"{person} started a session{away}",
                                      {"message_id": envelope.message_id, "page": entry_page(event),
                                       "visitor": visitor})
        return raised

    def _raise(self, alerts: Alerts, rule: Rule, subject: str, cause: str, at: int, now_ms: int, text: str,
               details: dict) -> list[Envelope]:
        if rule.cooldown_ms:
            key = state_key("c", rule.name, subject)
            if self.values.get(key, 0) > at:
                return []
            if not self._set(key, at + rule.cooldown_ms):
                return []  # over the project's keys: no cooldown to keep, so no alert (never a flood)
        minute, raised = self.values.get("r|" + rule.name) or [at // 60_000, 0]
        raised = raised if minute == at // 60_000 else 0
        if raised >= self.limits.max_per_minute:
            self.suppressed += 1
            return []
        self._set(state_key("r", rule.name), [at // 60_000, raised + 1])
        quiet = alerts.quiet.holds(at) if alerts.quiet else False
        return [alert_envelope(self.project_id, rule, subject, cause, at, now_ms, text, quiet, details)]

    # windows

    def watermark(self, now_ms: int, now_s: float) -> int:
        latest = self.values.get("m", 0)
        if now_s - self.last_input_s >= self.limits.idle_ms / 1000:
            latest = max(latest, now_ms)
        return latest - self.limits.grace_ms

    def close_windows(self, alerts: Alerts, now_ms: int, now_s: float) -> list[Envelope]:
        """Close every threshold window the watermark has passed (after counting what was added); the
        alerts they raise."""
        self.flush_counts()
        mark = self.watermark(now_ms, now_s)
        raised = []
        for rule in alerts.thresholds:
            progress = self.values.get(state_key("n", rule.name))
            if progress is None:
                continue
            start, first = progress
            while start + rule.window_ms <= mark:
                raised += self._close(alerts, rule, start, first, now_ms)
                start += rule.every_ms
            if start != progress[0]:
                self._set(state_key("n", rule.name), [start, first])
        return raised

    def _close(self, alerts: Alerts, rule: ThresholdRule, start: int, first: int, now_ms: int) -> list[Envelope]:
        """Close the window starting at ``start``. Its count is kept while a later window compares with
        it (``against_ms``); the one it was compared with is no longer needed."""
        key = state_key("w", rule.name, start)
        count = self.values.get(key, 0)
        before = None
        if rule.against_ms:
            earlier = start - rule.against_ms
            before = self.values.get(state_key("w", rule.name, earlier), 0) if earlier >= first else None
            self._delete(state_key("w", rule.name, earlier))
        else:
            self._delete(key)
        self._forget_members(rule.name, start)  # closed: its count is kept, not who made it
        reason = rule.crossed(count, before)
        if not reason:
            return []
        end = start + rule.window_ms
        return self._raise(alerts, rule, "", str(start), end, now_ms,
                           f"{reason} from {iso_ms(start)} to {iso_ms(end)}",
                           {"count": count, "before": before, "window_start": iso_ms(start), "window_end": iso_ms(end)})

    def forget_rules(self, alerts: Alerts) -> None:
        """Drop the state of rules the project no longer has."""
        names = {rule.name for rule in alerts.rules}
        for key in list(self.values):
            kind, _, rest = key.partition("|")
            if kind in ("w", "n", "c", "r", "u") and rest.partition("|")[0] not in names:
                self._delete(key)
                self.started.clear()  # a rule of that name may come back: its counting starts again
        self.members = {k: v for k, v in self.members.items() if k[0] in names}
