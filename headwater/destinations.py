"""A project's destinations: where the forwarder sends its events once the pipeline is done with them.

A project's ``destinations`` is a list of objects::

    {"name": NAME, "type": TYPE, "settings": {...}, "source": "events" or "alerts",
     "when": condition, "do": [operation, ...] or "python": TRANSFORMATION,
     "batch": {"max_events": N, "max_ms": MS}, "paused": false}

- ``name`` (letters, digits, ``_`` and ``-``, at most 40) is unique within the project; it names the
  destination's consumer group (:func:`destination_group`), metrics and dead letters.
- ``type`` is one of the forwarder's destination types (``forwarder/registry.py``), which checks
  ``settings``. A setting named in :data:`SECRET_SETTINGS` is a secret: sealed in the projects topic
  (:mod:`headwater.sealing`), never shown back (:func:`shown`), and kept when a change leaves it out
  (:func:`merge_secrets`); ``null`` removes it.
- ``source``: ``events`` (the default), the project's events as the pipeline finished them; or
  ``alerts``, the alerts its rules raise (:mod:`headwater.alerts`), each a ``track`` event named
  ``Alert``; those raised in the project's quiet hours are not sent. A destination of alerts is a
  channel: a ``when`` such as ``{"field": "properties.rule", "in": [...]}`` picks its rules.
- ``when`` (optional) is a condition of :mod:`headwater.conditions`: only the events it holds for go.
- ``do`` (optional) is a declarative transformation (:mod:`headwater.transforms`) applied to the events
  that go, for this destination only; an operation that drops an event keeps it from this destination.
  Or ``python`` names a Python transformation the operator installed (:mod:`headwater.plugins`), which
  the forwarder runs as the transform step runs it: within ``transform_budget_ms``, its failures
  dead-lettered, a split giving several events.
- ``batch``: the forwarder delivers at most ``max_events`` events at a time, and waits at most ``max_ms``
  for a batch to fill.
- ``paused``: a paused destination reads nothing; its consumer group keeps its place, so it resumes
  where it stopped (within Kafka's retention).
- ``created_at_ms`` is set when the destination is first stored: it gets the events indexed from then
  on (not the topic's whole retention).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from headwater.conditions import ConditionError, Matcher, compile_condition
from headwater.sealing import Sealer
from headwater.transforms import NAME, TransformError, compile_operations

SECRET_SETTINGS = frozenset({"secret", "write_key", "secret_access_key", "password", "webhook_url"})
SHOWN_SECRET = "(set)"
KEYS = frozenset({"name", "type", "settings", "source", "when", "do", "python", "batch", "paused", "created_at_ms"})
EVENTS, ALERTS = "events", "alerts"
SOURCES = (EVENTS, ALERTS)
MAX_DESTINATIONS = 20
DEFAULT_MAX_EVENTS = 100
DEFAULT_MAX_MS = 1_000
MAX_EVENTS_LIMIT = 10_000
MAX_MS_LIMIT = 600_000


class DestinationError(ValueError):
    """Destinations that break the grammar or a limit; ``problems`` names each with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class DestinationSpec:
    """One destination of one project, checked. ``version`` changes with any part of its definition,
    so a forwarder can tell that the one it runs is out of date."""

    project_id: str
    name: str
    type: str
    settings: dict[str, Any]
    when: Matcher | None
    apply: Callable[[dict[str, Any]], dict[str, Any] | None] | None
    python: str | None  # an installed Python transformation, run by the forwarder
    max_events: int
    max_ms: int
    paused: bool
    created_at_ms: int
    version: str
    source: str = EVENTS

    @property
    def key(self) -> str:
        return f"{self.project_id}/{self.name}"

    @property
    def group_id(self) -> str:
        return destination_group(self.project_id, self.name)

    def select(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event as this destination gets it (changed in place by ``do``), or ``None`` when it does
        not go. A ``python`` transformation is the forwarder's to run, after this."""
        if self.source == ALERTS and (event.get("properties") or {}).get("quiet"):
            return None  # raised in the project's quiet hours: recorded, not sent
        if self.when is not None and not self.when(event):
            return None
        return self.apply(event) if self.apply is not None else event


def destination_group(project_id: str, name: str) -> str:
    """The consumer group of one destination: each advances alone."""
    return f"headwater-forwarder-{project_id}-{name}"


def parse_destinations(project_id: str, raw: object) -> list[DestinationSpec]:
    """The checked destinations of a project's ``destinations``; raises :class:`DestinationError`
    naming every problem (the type's own settings are checked by the forwarder's registry)."""
    if not isinstance(raw, list) or len(raw) > MAX_DESTINATIONS:
        raise DestinationError([f"destinations: a list of at most {MAX_DESTINATIONS} destinations"])
    specs, problems, names = [], [], set()
    for i, entry in enumerate(raw):
        try:
            spec = _parse(project_id, entry, f"destinations[{i}]")
        except DestinationError as exc:
            problems += exc.problems
            continue
        if spec.name in names:
            problems.append(f"destinations[{i}]: the name {spec.name!r} is used twice")
        names.add(spec.name)
        specs.append(spec)
    if problems:
        raise DestinationError(problems)
    return specs


def _parse(project_id: str, entry: object, where: str) -> DestinationSpec:
    if not isinstance(entry, dict) or set(entry) - KEYS or not {"name", "type"} <= set(entry):
        extra = sorted(set(entry) - KEYS) if isinstance(entry, dict) else entry
        raise DestinationError([f"{where}: an object with name and type, and any of settings, source, when, do, "
                                f"batch, paused (not {extra!r})"])
    problems = []
    name, kind, settings = entry["name"], entry["type"], entry.get("settings", {})
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append(f"{where}.name: 1 to 40 letters, digits, _ or -")
    if not isinstance(kind, str) or not NAME.fullmatch(kind):
        problems.append(f"{where}.type: a destination type, like webhook")
    if not isinstance(settings, dict):
        problems.append(f"{where}.settings: an object")
    if entry.get("source", EVENTS) not in SOURCES:
        problems.append(f"{where}.source: events or alerts")
    if not isinstance(entry.get("paused", False), bool):
        problems.append(f"{where}.paused: true or false")
    if not _whole(entry.get("created_at_ms", 0), 0, 2**53):
        problems.append(f"{where}.created_at_ms: milliseconds since 1970")
    when, apply = None, None
    try:
        when = compile_condition(entry["when"], f"{where}.when") if "when" in entry else None
    except ConditionError as exc:
        problems += exc.problems
    try:
        apply = compile_operations(entry["do"], f"{where}.do") if "do" in entry else None
    except TransformError as exc:
        problems += exc.problems
    python = entry.get("python")
    if python is not None and ("do" in entry or not isinstance(python, str) or not NAME.fullmatch(python)):
        problems.append(f"{where}.python: the name of an installed transformation, instead of do")
    max_events, max_ms = _batch(entry.get("batch", {}), f"{where}.batch", problems)
    if problems:
        raise DestinationError(problems)
    version = hashlib.sha256(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return DestinationSpec(project_id, name, kind, settings, when, apply, python, max_events, max_ms,
                           entry.get("paused", False), entry.get("created_at_ms", 0), version,
                           entry.get("source", EVENTS))


def _batch(raw: object, where: str, problems: list[str]) -> tuple[int, int]:
    if not isinstance(raw, dict) or set(raw) - {"max_events", "max_ms"}:
        problems.append(f"{where}: an object with max_events and max_ms")
        return DEFAULT_MAX_EVENTS, DEFAULT_MAX_MS
    max_events, max_ms = raw.get("max_events", DEFAULT_MAX_EVENTS), raw.get("max_ms", DEFAULT_MAX_MS)
    if not _whole(max_events, 1, MAX_EVENTS_LIMIT):
        problems.append(f"{where}.max_events: a whole number from 1 to {MAX_EVENTS_LIMIT}")
    if not _whole(max_ms, 10, MAX_MS_LIMIT):
        problems.append(f"{where}.max_ms: a whole number of milliseconds from 10 to {MAX_MS_LIMIT}")
    return max_events, max_ms


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _map_secrets(destinations: list[dict], change: Callable[[str], str]) -> list[dict]:
    out = []
    for entry in destinations:
        settings = entry.get("settings")
        if isinstance(settings, dict):
            settings = {k: change(v) if k in SECRET_SETTINGS and isinstance(v, str) else v for k, v in settings.items()}
            entry = {**entry, "settings": settings}
        out.append(entry)
    return out


def sealed(destinations: list[dict], sealer: Sealer) -> list[dict]:
    """The destinations as written to the projects topic: their secrets sealed."""
    return _map_secrets(destinations, sealer.seal)


def opened(destinations: list[dict], sealer: Sealer) -> list[dict]:
    """The destinations as read from the projects topic: their secrets opened."""
    return _map_secrets(destinations, sealer.open)


def shown(destinations: list[dict]) -> list[dict]:
    """The destinations as the API, CLI and dashboard show them: a secret only as set."""
    return _map_secrets(destinations, lambda value: SHOWN_SECRET)


def merge_stored(new: object, current: list[dict], now_ms: int) -> object:
    """``new`` as it is stored: each secret it leaves out (or gives as shown) taken from the destination
    of the same name in ``current``, so a definition read back from the API can be sent again (a secret
    given as ``null`` is removed); and each destination's ``created_at_ms`` kept, or set to ``now_ms``
    for a new one."""
    if not isinstance(new, list):
        return new
    stored = {entry.get("name"): entry for entry in current if isinstance(entry, dict)}
    merged = []
    for entry in new:
        if isinstance(entry, dict) and isinstance(entry.get("settings", {}), dict):
            before = stored.get(entry.get("name"), {})
            settings = dict(entry.get("settings", {}))
            for name, value in (before.get("settings") or {}).items():
                if name in SECRET_SETTINGS and settings.get(name, SHOWN_SECRET) == SHOWN_SECRET:
                    settings[name] = value
            entry = {**entry, "settings": {k: v for k, v in settings.items() if v not in (None, SHOWN_SECRET)},
                     "created_at_ms": before.get("created_at_ms", now_ms)}
        merged.append(entry)
    return merged
