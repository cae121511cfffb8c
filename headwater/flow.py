"""The processing flow: which steps an event passes through, in which order, and why.

This is the one place where the order of the steps is written down. A project's flow may leave steps
out, but the steps it keeps always run in this order:

1. ``validate``   -- first, so that no later step sees an event that breaks its schema.
2. ``enrich``     -- user agent, GeoIP, referrer, campaign. GeoIP needs the raw IP, so it runs before
                     anonymisation.
3. ``anonymize``  -- applies the project's privacy policy (IP truncation, hashing, dropping fields).
                     After this step the raw IP is gone from the event.
4. ``transform`` -- the project's own transformations (:mod:`headwater.transforms`), as many as it
                     names, in the order it names them. After anonymisation, so that code and rules a
                     team writes never see what its privacy policy removes; before sessionisation, so
                     that the events they drop, split or rename are the ones sessions count.
5. ``sessionize`` -- after anonymisation, so session state (a durable changelog) never holds raw PII.
6. ``index``      -- the indexer loads the event into ClickHouse. Always last.

A project's flow is a list of steps, each a name or ``{"step": name, "when": condition}`` (the condition
language is :mod:`headwater.conditions`); a transform step is always an object that names itself. An
event goes through a conditional step only when its condition holds; one whose ``index`` step is
skipped is dropped. The mediator works out each event's route and carries it with the event as a
routing slip (see :mod:`headwater.routing`), in which a transform step is ``transform:NAME``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from headwater.conditions import ConditionError, Matcher, compile_condition
from headwater.routing import step_kind
from headwater.transforms import NAME, TransformError, compile_operations, version_of

SESSIONIZE_STEP = "sessionize"
TRANSFORM_STEP = "transform"
PROCESSOR_STEPS: tuple[str, ...] = ("validate", "enrich", "anonymize", TRANSFORM_STEP, SESSIONIZE_STEP)
INDEX_STEP = "index"
STEP_ORDER: tuple[str, ...] = (*PROCESSOR_STEPS, INDEX_STEP)
DEFAULT_FLOW: tuple[str, ...] = tuple(step for step in STEP_ORDER if step != TRANSFORM_STEP)

# What each step is to the pipeline, read without loading the steps (their classes and checks are in
# processors.steps). A stateful step keeps its state in Kafka transactions of its own, so it runs as
# its own process; a step that reads visits is sent, beside each record's events, what it reads of
# each one (headwater.routing.VISITS_HEADER), which is far cheaper to decode than the events.
STATEFUL_STEPS = frozenset({SESSIONIZE_STEP})
VISIT_READERS = frozenset({SESSIONIZE_STEP})


class FlowError(ValueError):
    """A flow names an unknown step, repeats one, reorders them, or does not end in ``index``."""


@dataclasses.dataclass(frozen=True)
class TransformSpec:
    """One transform step of a flow: its declarative operations (``apply``) or the installed Python
    transformation it runs (``python``), and the version each event's lineage records."""

    name: str
    version: str
    apply: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None
    python: str | None = None


@dataclasses.dataclass(frozen=True)
class Flow:
    """A validated flow: its steps in order (slip names), the condition of each (``None``: every
    event), and its transform steps by slip name."""

    steps: tuple[str, ...]
    conditions: tuple[Matcher | None, ...]
    transforms: dict[str, TransformSpec] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def conditional(self) -> bool:
        """Whether any step has a condition (read for every record the mediator routes)."""
        return any(condition is not None for condition in self.conditions)

    def route(self, event: dict[str, Any]) -> tuple[str, ...]:
        """The steps ``event`` goes through; without ``index`` the event is dropped."""
        return tuple([step for step, condition in zip(self.steps, self.conditions)
                      if condition is None or condition(event)])


def parse_flow(flow: object) -> Flow:
    """The flow of a project's configuration (``None``: the default flow); raises :class:`FlowError`
    listing every problem found."""
    if flow is None:
        flow = DEFAULT_FLOW
    if not isinstance(flow, (list, tuple)):
        raise FlowError(f"a flow is a list of steps, like {list(DEFAULT_FLOW)}")
    steps, conditions, transforms, problems = [], [], {}, []
    for i, entry in enumerate(flow):
        step, condition, problem = _entry(entry, i)
        if step_kind(step) == TRANSFORM_STEP and not problem:
            spec, problem = _transform(entry, i)  # type: ignore[arg-type]  # _entry made sure it is a dict
            if spec:
                transforms[step] = spec
        steps.append(step)
        conditions.append(condition)
        problems += problem
    problems += _order_problems(steps)
    if problems:
        raise FlowError(f"invalid flow {list(flow)}: " + "; ".join(problems))
    return Flow(tuple(steps), tuple(conditions), transforms)


_ENTRY = f"a step name, {{\"step\": name, \"when\": condition}}, or a {TRANSFORM_STEP} step"
_TRANSFORM_KEYS = {"step", "name", "when", "do", "python"}


def _entry(entry: object, i: int) -> tuple[str, Matcher | None, list[str]]:
    """The entry's slip name, condition and problems; a slip name (``transform:NAME``) is made here
    from a transform step's name, never taken from the document."""
    given = entry.get("step") if isinstance(entry, dict) else entry
    if not isinstance(given, str) or ":" in given:
        return "", None, [f"step {i}: {_ENTRY}" if not isinstance(given, str) else f"unknown step {given!r}"]
    if isinstance(entry, str):
        return entry, None, ([f"step {i}: a {TRANSFORM_STEP} step is an object with its name and what it does"]
                             if entry == TRANSFORM_STEP else [])
    assert isinstance(entry, dict)
    step, keys = given, set(entry)
    if step == TRANSFORM_STEP:
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name) or keys - _TRANSFORM_KEYS:
            return "", None, [f"step {i} ({TRANSFORM_STEP}): {{\"step\": \"{TRANSFORM_STEP}\", \"name\": NAME, "
                              "\"do\": [...] or \"python\": PLUGIN, \"when\": condition}, NAME of 1 to 40 "
                              "letters, digits, _ or -"]
        step = f"{TRANSFORM_STEP}:{name}"
    elif keys - {"step", "when"}:
        return "", None, [f"step {i}: {_ENTRY}"]
    if "when" not in entry:
        return step, None, []
    try:
        return step, compile_condition(entry["when"], f"step {i} ({step}) when"), []
    except ConditionError as exc:
        return step, None, exc.problems


def _transform(entry: dict, i: int) -> tuple[TransformSpec | None, list[str]]:
    name, where = entry["name"], f"step {i} ({TRANSFORM_STEP}:{entry['name']})"
    if ("do" in entry) == ("python" in entry):
        return None, [f"{where}: give either do (operations) or python (an installed transformation)"]
    if "python" in entry:
        plugin = entry["python"]
        if not isinstance(plugin, str) or not NAME.fullmatch(plugin):
            return None, [f"{where}.python: the name of an installed transformation"]
        return TransformSpec(name, "", python=plugin), []
    try:
        return TransformSpec(name, version_of(entry["do"]), apply=compile_operations(entry["do"], f"{where}.do")), []
    except TransformError as exc:
        return None, exc.problems


def _order_problems(steps: list[str]) -> list[str]:
    flow = [step for step in steps if step]
    kinds = [step_kind(step) for step in flow]
    problems = [f"unknown step {step!r}" for step in flow if step_kind(step) not in STEP_ORDER]
    if len(set(flow)) != len(flow):
        problems.append("a step is repeated")
    if not flow or flow[-1] != INDEX_STEP:
        problems.append(f"the flow must end with {INDEX_STEP!r}")
    known = [kind for kind in kinds if kind in STEP_ORDER]
    if known != sorted(known, key=STEP_ORDER.index):
        problems.append(f"steps must keep the order {' -> '.join(STEP_ORDER)}")
    return problems


def validate_flow(flow: object) -> tuple[str, ...]:
    """The flow's steps, or raise :class:`FlowError` listing every problem found."""
    return parse_flow(flow).steps
