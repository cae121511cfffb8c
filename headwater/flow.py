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

The route is carried with each message as a routing slip (see :mod:`headwater.routing`).
"""

from __future__ import annotations

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


def validate_flow(flow: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return the flow as a tuple, or raise :class:`FlowError` listing every problem found."""
    if not isinstance(flow, (list, tuple)) or not all(isinstance(step, str) for step in flow):
        raise FlowError(f"a flow is a list of step names, like {list(DEFAULT_FLOW)}")
    problems = [f"unknown step {step!r}" for step in flow if step not in DEFAULT_FLOW]
    if len(set(flow)) != len(flow):
        problems.append("a step is repeated")
    if not flow or flow[-1] != INDEX_STEP:
        problems.append(f"the flow must end with {INDEX_STEP!r}")
    known = [step for step in flow if step in DEFAULT_FLOW]
    if known != sorted(known, key=DEFAULT_FLOW.index):
        problems.append(f"steps must keep the order {' -> '.join(DEFAULT_FLOW)}")
    if problems:
        raise FlowError(f"invalid flow {list(flow)}: " + "; ".join(problems))
    return tuple(flow)
