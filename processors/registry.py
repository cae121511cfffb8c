"""The role that runs one step of the flow, or several stateless steps in one process, built from
the steps' registry (:mod:`processors.steps`)."""

from __future__ import annotations

import asyncio

from headwater.consuming import Resource, run_side_by_side
from headwater.flow import PROCESSOR_STEPS, STATEFUL_STEPS
from headwater.partitioning import PartitionMap
from headwater.projects.store import ProjectStore
from headwater.relay import Relay, RelayMetrics
from headwater.settings import Settings
from headwater.step_counts import StepCounts
from headwater.topics import processor_group, step_topic
from processors.base import Processor, transform_for
from processors.checks import ConfigError, check_deployment, require_valid
from processors.steps import STEPS


def role_steps(names: list[str] | tuple[str, ...] | str) -> list[str]:
    """The steps one process runs, in flow order; raises ``ValueError`` naming the problem."""
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in PROCESSOR_STEPS]
    if unknown or not names:
        raise ValueError(f"unknown processor {', '.join(map(repr, unknown)) or '(none)'}; "
                         f"the steps are {', '.join(PROCESSOR_STEPS)}")
    if len(set(names)) != len(names):
        raise ValueError("a step is named twice")
    stateful = [n for n in names if n in STATEFUL_STEPS]
    if stateful and len(names) > 1:
        raise ValueError(f"{stateful[0]} keeps state in Kafka transactions of its own: run it as its own process")
    return sorted(names, key=PROCESSOR_STEPS.index)


def build_processors(names: list[str], settings: Settings) -> tuple[dict[str, Processor], ProjectStore, tuple]:
    """The processors for the stateless steps ``names``, their project store, and the resources
    (stores) they need started, shared between them."""
    # Checked before any processor is built, so a broken GeoIP database is reported with the rest.
    problems = check_deployment(settings)
    if problems:
        raise ConfigError(problems)
    store, built = ProjectStore(settings), {}
    resources: list[Resource] = [store]
    for name in names:
        if name in STATEFUL_STEPS:
            raise ValueError(f"{name!r} is not a stateless processor; see build_role")
        built[name], needs = STEPS[name].processor().build(settings, store)
        resources.extend(needs)
    return built, store, tuple(resources)


def build_role(names: list[str] | tuple[str, ...] | str, settings: Settings):
    """The long-running role for the steps ``names``: the stateful sessionizer, one relay, or
    :class:`Colocated` relays."""
    steps = role_steps(names)
    if steps[0] in STATEFUL_STEPS:
        return STEPS[steps[0]].stateful_role()(settings, lambda projects: require_valid(settings, projects))
    processors, store, resources = build_processors(steps, settings)
    check = lambda: require_valid(settings, list(store.projects.values()))  # noqa: E731
    if len(steps) == 1:
        return _relay(processors[steps[0]], {}, settings, resources, check)
    shared = RelayMetrics()
    for processor in processors.values():
        processor.register(shared.registry)
    relays = [_relay(processor, {n: p for n, p in processors.items() if n != name}, settings, metrics=shared)
              for name, processor in processors.items()]
    return Colocated(settings, relays, resources, check, shared)


def _relay(processor: Processor, colocated: dict[str, Processor], settings: Settings,
           resources: tuple = (), check=None, metrics: RelayMetrics | None = None) -> Relay:
    partitions, counts = PartitionMap(), StepCounts(settings)
    relay = Relay(settings, processor_group(processor.name), [step_topic(settings, processor.name)],
                  transform_for(processor, partitions, colocated, counts), partitions, processor.name, resources,
                  check, metrics=metrics, serve_metrics=metrics is None, counts=counts)
    if metrics is None:
        processor.register(relay.metrics.registry)
    return relay


class Colocated:
    """Several stateless steps in one process (``headwater processor validate enrich anonymize``).

    Each step's topic is still read by that step's own consumer group, so a process running several
    steps and one running a single step can be swapped for one another, or run side by side, without
    moving any committed offset. An event that enters at a step this process runs goes on in-process
    through every later step of its routing slip that the process also runs, and is produced once, to
    the topic of the first step it does not run: one JSON decode and encode and one Kafka hop instead
    of one per step. Delivery and commit semantics are each relay's (:class:`headwater.relay.Relay`):
    an input record's offset is committed after every output of all its in-process steps is
    acknowledged. A relay that fails stops the others, and the process exits.
    """

    def __init__(self, settings: Settings, relays: list[Relay], resources: tuple[Resource, ...], check,
                 shared: RelayMetrics) -> None:
        self.settings = settings
        self.relays = relays
        self.resources = resources
        self.check = check
        self.metrics = shared
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        for resource in self.resources:
            await resource.start()
        try:
            self.check()
            await run_side_by_side(self.relays, self.metrics.registry, self.settings, self.stopping)
        finally:
            for resource in reversed(self.resources):
                await resource.stop()

    def stop(self) -> None:
        self.stopping.set()
        for relay in self.relays:
            relay.stop()
