"""The processing flow: which steps an event passes through, in which order, and why.

This is the one place where the order of the steps is written down. A project's flow may leave steps
out, but the steps it keeps always run in this order:

1. ``validate``   -- first, so that no later step sees an event that breaks its schema.
2. ``enrich``     -- user agent, GeoIP, referrer, campaign. GeoIP needs the raw IP, so it runs before
                     anonymisation.
3. ``anonymize``  -- applies the project's privacy policy (IP truncation, hashing, dropping fields).
                     After this step the raw IP is gone from the event.
4. ``sessionize`` -- after anonymisation, so session state (a durable changelog) never holds raw PII.
5. ``index``      -- the indexer loads the event into ClickHouse. Always last.

A project's flow is a list of steps, each a name or ``{"step": name, "when": condition}`` (the condition
language is :mod:`headwater.conditions`). An event goes through a conditional step only when its
condition holds; one whose ``index`` step is skipped is dropped. The mediator works out each event's
route and carries it with the event as a routing slip (see :mod:`headwater.routing`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from headwater.conditions import ConditionError, Matcher, compile_condition

SESSIONIZE_STEP = "sessionize"
PROCESSOR_STEPS: tuple[str, ...] = ("validate", "enrich", "anonymize", SESSIONIZE_STEP)
INDEX_STEP = "index"
DEFAULT_FLOW: tuple[str, ...] = (*PROCESSOR_STEPS, INDEX_STEP)

# What each step is to the pipeline, read without loading the steps (their classes and checks are in
# processors.steps). A stateful step keeps its state in Kafka transactions of its own, so it runs as
# its own process; a step that reads visits is sent, beside each record's events, what it reads of
# each one (headwater.routing.VISITS_HEADER), which is far cheaper to decode than the events.
STATEFUL_STEPS = frozenset({SESSIONIZE_STEP})
VISIT_READERS = frozenset({SESSIONIZE_STEP})


class FlowError(ValueError):
    """A flow names an unknown step, repeats one, reorders them, or does not end in ``index``."""


@dataclasses.dataclass(frozen=True)
class Flow:
    """A validated flow: its steps in order, and the condition of each (``None``: every event)."""

    steps: tuple[str, ...]
    conditions: tuple[Matcher | None, ...]

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
    steps, conditions, problems = [], [], []
    for i, entry in enumerate(flow):
        step, condition, problem = _entry(entry, i)
        steps.append(step)
        conditions.append(condition)
        problems += problem
    problems += _order_problems(steps)
    if problems:
        raise FlowError(f"invalid flow {list(flow)}: " + "; ".join(problems))
    return Flow(tuple(steps), tuple(conditions))


def _entry(entry: object, i: int) -> tuple[str, Matcher | None, list[str]]:
    if isinstance(entry, str):
        return entry, None, []
    if not isinstance(entry, dict) or not isinstance(entry.get("step"), str) or set(entry) - {"step", "when"}:
        return "", None, [f"step {i}: a step name, or {{\"step\": name, \"when\": condition}}"]
    if "when" not in entry:
        return entry["step"], None, []
    try:
        return entry["step"], compile_condition(entry["when"], f"step {i} ({entry['step']}) when"), []
    except ConditionError as exc:
        return entry["step"], None, exc.problems


def _order_problems(steps: list[str]) -> list[str]:
    flow = [step for step in steps if step]
    problems = [f"unknown step {step!r}" for step in flow if step not in DEFAULT_FLOW]
    if len(set(flow)) != len(flow):
        problems.append("a step is repeated")
    if not flow or flow[-1] != INDEX_STEP:
        problems.append(f"the flow must end with {INDEX_STEP!r}")
    known = [step for step in flow if step in DEFAULT_FLOW]
    if known != sorted(known, key=DEFAULT_FLOW.index):
        problems.append(f"steps must keep the order {' -> '.join(DEFAULT_FLOW)}")
    return problems


def validate_flow(flow: object) -> tuple[str, ...]:
    """The flow's steps, or raise :class:`FlowError` listing every problem found."""
    return parse_flow(flow).steps
