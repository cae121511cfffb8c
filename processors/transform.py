"""The transform step: runs each project's own transformations, declarative or Python, by name.

One step serves every project: an event's routing slip names the transformation (``transform:NAME``),
and the project's flow says what ``NAME`` does (:class:`headwater.flow.TransformSpec`). Each event
that a transformation returns records ``NAME@VERSION`` in its lineage (``enriched.transforms``, the
``transforms`` column).

A Python transformation (:mod:`headwater.plugins`) gets a copy of the event and a
:class:`TransformContext`, and must not hurt the pipeline:

- it has ``transform_budget_ms`` for each event: past that, it is interrupted (SIGALRM, on the main
  thread; a call into C that does not return is caught when it does) and the event is dead-lettered
  as ``transform_timeout``;
- an exception dead-letters the event as ``transform_error``, with the traceback's last frame; a
  result that is not an event, ``None`` or a list of at most ``headwater.plugins.MAX_SPLIT`` events, or an event that is
  not JSON or larger than ``max_event_bytes``, as ``transform_output``;
- a transformation that fails for more than ``max_invalid_ratio`` of its last ``invalid_window``
  events raises the alarm, as the relay's flood breaker does: a critical ``transform_failing`` log line
  and ``headwater_transform_failing{project, transform}`` at 1 until it recovers. Its events are
  dead-lettered meanwhile, to be replayed after the fix; the step goes on with the other events.

The events a transformation drops are counted in ``headwater_transform_dropped_total{project, transform}``.

An event split in several keeps its message id on the first and gets ``<id>:<n>`` on the n-th after
it, so that a replay of the same input gives the same ids (and the indexer drops the copies).
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from headwater.deadletter import Rejected
from headwater.envelope import Envelope
from headwater.flow import TRANSFORM_STEP, Flow, FlowError, TransformSpec, parse_flow
from headwater.plugins import ENTRY_POINT_GROUP, TransformContext, installed, plugin_events, run_plugin
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects, ProjectStore
from headwater.relay import InvalidRatio
from headwater.settings import Settings, get_settings
from processors.base import Processor

log = structlog.get_logger()
OUTCOMES_PER_CHECK = 20


class Transform(Processor):
    name = TRANSFORM_STEP

    def __init__(self, settings: Settings, store: ProjectStore | FixedProjects) -> None:
        super().__init__(settings)
        self.store = store
        self.plugins, _ = installed(settings.transforms_dir)
        self.budget_s = settings.transform_budget_ms / 1000
        self.instances: dict[str, Named] = {}
        self.health: dict[tuple[str, str], InvalidRatio] = {}
        self.counts: dict[tuple[str, str], list[int]] = {}  # [events, failed] not yet added to health
        self.failing: set[tuple[str, str]] = set()
        self.failing_gauge: Gauge | None = None
        self.failures: Counter | None = None
        self.dropped: Counter | None = None

    def bound(self, slip_name: str) -> Processor:
        if slip_name not in self.instances:
            self.instances[slip_name] = Named(self, slip_name)
        return self.instances[slip_name]

    def register(self, registry: CollectorRegistry) -> None:
        self.failing_gauge = Gauge("headwater_transform_failing", "1 while more than max_invalid_ratio of a "
                                   "transformation's recent events failed", ["project", "transform"],
                                   registry=registry)
        self.failures = Counter("headwater_transform_failures", "events a transformation failed on",
                                ["project", "transform", "reason"], registry=registry)
        self.dropped = Counter("headwater_transform_dropped", "events a transformation dropped",
                               ["project", "transform"], registry=registry)

    def process(self, envelope: Envelope) -> Envelope | None:
        raise Rejected("invalid_flow", "a transform step without a name in the routing slip")

    def spec(self, project_id: str, slip_name: str) -> TransformSpec:
        flow = self.store.derived(project_id, "transform_flow", _flow_of)
        spec = flow.transforms.get(slip_name) if flow else None
        if spec is None:
            raise Rejected("invalid_flow", f"the project's flow has no step {slip_name!r} (it changed while the "
                                           "event was on its way): replay it to send it through the flow as it is")
        return spec

    def outcome(self, project_id: str, name: str, reason: str | None) -> None:
        """Count one event's outcome for the transformation's breaker (``reason``: it failed). The
        breaker looks every ``OUTCOMES_PER_CHECK`` events: two additions an event in between."""
        key = (project_id, name)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = [0, 0]
        counts[0] += 1
        if reason is not None:
            counts[1] += 1
            if self.failures is not None:
                self.failures.labels(project_id, name, reason).inc()
        if counts[0] >= OUTCOMES_PER_CHECK:
            self._check(key, counts)

    def _check(self, key: tuple[str, str], counts: list[int]) -> None:
        health = self.health.get(key)
        if health is None:
            health = self.health[key] = InvalidRatio(self.settings.max_invalid_ratio, self.settings.invalid_window)
        health.add(counts[0], counts[1])
        counts[0] = counts[1] = 0
        tripped = health.tripped()
        if tripped != (key in self.failing):
            self._alarm(key, health, tripped)

    def _alarm(self, key: tuple[str, str], health: InvalidRatio, tripped: bool) -> None:
        (self.failing.add if tripped else self.failing.discard)(key)
        if self.failing_gauge is not None:
            self.failing_gauge.labels(*key).set(1 if tripped else 0)
        if tripped:
            log.critical("transform_failing", project=key[0], transform=key[1], failed=health.rejected,
                         events=health.events, note="dead-lettering them; fix the transformation and replay")
        else:
            log.warning("transform_failing_over", project=key[0], transform=key[1], failed=health.rejected,
                        events=health.events)


class Named(Processor):
    """One transform step of the flows (``transform:NAME``): each project's own ``NAME``."""

    def __init__(self, step: Transform, slip_name: str) -> None:
        super().__init__(step.settings)
        self.step = step
        self.name = slip_name  # type: ignore[misc]  # dead letters name the step as the slip does

    def process(self, envelope: Envelope) -> Envelope | list[Envelope] | None:
        spec = self.step.spec(envelope.project_id, self.name)
        try:
            result = self._declarative(spec, envelope) if spec.apply else self._python(spec, envelope)
        except Rejected as error:
            self.step.outcome(envelope.project_id, spec.name, error.reason)
            raise
        self.step.outcome(envelope.project_id, spec.name, None)
        if result is None and self.step.dropped is not None:
            self.step.dropped.labels(envelope.project_id, spec.name).inc()
        return result

    def _declarative(self, spec: TransformSpec, envelope: Envelope) -> Envelope | None:
        assert spec.apply is not None
        try:
            if spec.apply(envelope.event) is None:
                return None
        except Exception as exc:  # the operations guard their inputs; a value they missed ends here
            raise Rejected("transform_error", f"{type(exc).__name__}: {exc}") from None
        envelope.enriched["transforms"] = [*envelope.enriched.get("transforms", ()), f"{spec.name}@{spec.version}"]
        return envelope

    def _python(self, spec: TransformSpec, envelope: Envelope) -> Envelope | list[Envelope] | None:
        plugin = self.step.plugins.get(spec.python or "")
        if plugin is None:
            raise Rejected("transform_error", f"no transformation {spec.python!r} is installed here "
                                              "(transforms_dir or the headwater.transforms entry points)")
        context = TransformContext(envelope.project_id, envelope.message_id, envelope.received_at_ms, spec.name,
                                   plugin.version)
        result = run_plugin(plugin, orjson.loads(orjson.dumps(envelope.event)), context, self.step.budget_s)
        events = plugin_events(result, self.settings.max_event_bytes)
        lineage = [*envelope.enriched.get("transforms", ()), f"{spec.name}@{plugin.version}"]
        if len(events) == 1:  # the common case: the envelope itself goes on, with its new event
            envelope.event = events[0]
            envelope.event["messageId"] = envelope.message_id
            envelope.enriched["transforms"] = lineage
            return envelope
        seen: set[int] = set()
        out = []
        for i, event in enumerate(events):
            if id(event) in seen:  # the same dict twice: each event needs its own (its message id differs)
                event = orjson.loads(orjson.dumps(event))
            seen.add(id(event))
            out.append(_envelope(envelope, event, i, lineage))
        return out or None


def _flow_of(project: Project | None) -> Flow | None:
    try:
        return parse_flow(project.flow) if project else None
    except FlowError:  # the admin API refuses such flows; the event is dead-lettered as invalid_flow
        return None


def _envelope(original: Envelope, event: dict[str, Any], i: int, lineage: list[str]) -> Envelope:
    message_id = original.message_id if i == 0 else f"{original.message_id}:{i}"
    event["messageId"] = message_id
    return msgspec.structs.replace(original, message_id=message_id, event=event,
                                   enriched={**original.enriched, "transforms": lineage})


def check_project(project: Project) -> list[str]:
    """Every Python transformation the project's flow names is installed."""
    try:
        flow = parse_flow(project.flow)
    except FlowError:
        return []  # reported by the flow's own check
    plugins, _ = installed(get_settings().transforms_dir)
    return [f"flow step {spec.name}: no transformation {spec.python!r} is installed (transforms_dir or the "
            f"{ENTRY_POINT_GROUP} entry points)"
            for spec in flow.transforms.values() if spec.python and spec.python not in plugins]


def check_settings(settings: Settings) -> list[str]:
    problems = list(installed(settings.transforms_dir)[1])
    if not 0 < settings.transform_budget_ms <= 60_000:
        problems.append("transform_budget_ms must be more than 0 and at most 60000")
    return problems
