"""The mediator role.

It consumes the raw topic in the ``headwater-mediator`` group, looks up the project's flow, writes
each event's route into the routing slip and produces the record to the first step's topic. For a
flow without conditions it does not decode event bodies: the collector puts the project id in the
``hw-project`` header, and a raw record already holds the events of one project and one partition, so
records of one partition and project merge into one. For a flow with conditions it decodes the
events, works out each one's route (:class:`headwater.flow.Flow`), and groups the events by route;
an event whose route skips ``index`` is dropped and counted (``headwater_dropped_by_flow``). Delivery
and commit semantics are those of :class:`headwater.relay.Relay`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter

from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import decode_batch
from headwater.flow import INDEX_STEP, Flow, FlowError, parse_flow
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.relay import Relay
from headwater.relay_types import Output
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, encode_route, event_count, header_value, step_kind
from headwater.settings import Settings
from headwater.step_counts import StepCounts
from headwater.topics import MAX_MESSAGE_BYTES, MEDIATOR_GROUP, raw_topic, step_topic

GROUP_ID = MEDIATOR_GROUP


def project_of(record: ConsumerRecord) -> str:
    value = header_value(record.headers, PROJECT_HEADER)
    if not value:
        raise Rejected("missing_project", "the raw record has no hw-project header")
    return value.decode()


class Mediator:
    def __init__(self, settings: Settings, require_valid: Callable[[Settings, list[Project]], None]) -> None:
        """``require_valid`` raises on any problem of the configuration (the processors' checks, given
        by the command that runs the role): the mediator refuses to start on one."""
        self.settings = settings
        self.store = ProjectStore(settings)
        check = lambda: require_valid(settings, list(self.store.projects.values()))  # noqa: E731
        self.counts = StepCounts(settings)
        self.relay = Relay(settings, GROUP_ID, [raw_topic(settings)], self.route, PartitionMap(), "mediator",
                           (self.store,), check, input_codec="collector_compression", counts=self.counts)
        self.dropped = Counter("headwater_dropped_by_flow", "events dropped by their flow's conditions (no index step)",
                               registry=self.relay.metrics.registry)

    def flow_for(self, project_id: str) -> Flow:
        """The project's flow, looked up on every record (and validated once per change of the
        project), so a change applies to the events routed after it without a restart."""
        flow = self.store.derived(project_id, "flow", checked_flow)
        if isinstance(flow, Rejected):
            raise flow
        return flow

    def route(self, records: list[ConsumerRecord]) -> list[Output]:
        """Merge the records of each (partition, project, route) into one (a record's value is a JSON
        list, so lists join by their brackets), and send it to the first step of its route."""
        outputs: list[Output] = []
        merged: dict[tuple, list[Part]] = defaultdict(list)
        tallies: dict[str, list[int]] = {}  # per project: events in, routed, dead-lettered
        keys: dict[tuple, bytes] = {}
        for record in records:
            project_id, events = "", event_count(record.headers)
            try:
                project_id = project_of(record)
                flow = self.flow_for(project_id)
                parts, events = self._routed(record, flow) if flow.conditional else \
                    ({flow.steps: (record.value[1:-1], events)}, events)
            except Rejected as error:
                outputs.append(dead_letter(self.settings, record, error, "mediator"))
                if project_id:
                    _tally(tallies, project_id, events, 0, events)
                continue
            routed = sum(count for _, count in parts.values())
            _tally(tallies, project_id, events, routed, 0)
            for route, part in parts.items():
                slot = (record.partition, project_id, route)
                merged[slot].append(part)
                keys.setdefault(slot, record.key)
        for project_id, (events, routed, dead) in tallies.items():
            self.counts.add(project_id, "mediator", events, routed, events - routed - dead, dead)
        return outputs + self._merged_outputs(merged, keys)

    def _merged_outputs(self, merged: dict[tuple, list[Part]], keys: dict[tuple, bytes]) -> list[Output]:
        outputs = []
        for slot, group in merged.items():
            project_id, route = slot[1], slot[2]
            for chunk in chunks(group):
                value = b"[" + b",".join(inside for inside, _ in chunk) + b"]"
                events = sum(count for _, count in chunk)
                headers = [(PROJECT_HEADER, project_id.encode()), (EVENTS_HEADER, str(events).encode()),
                           *encode_route(route)]
                topic = step_topic(self.settings, step_kind(route[0]))
                outputs.append(Output(topic, keys[slot], value, headers, events))
        return outputs

    def _routed(self, record: ConsumerRecord, flow: Flow) -> tuple[dict[tuple[str, ...], Part], int]:
        """The record's events grouped by their own route, each group in order, and how many events
        it held; the events whose route skips ``index`` are dropped and counted."""
        try:
            envelopes = decode_batch(record.value)
        except ValueError as exc:
            raise Rejected("unparseable", str(exc)) from exc
        routes = [flow.route(envelope.event) for envelope in envelopes]
        if INDEX_STEP in routes[0] and routes.count(routes[0]) == len(routes):
            return {routes[0]: (record.value[1:-1], len(envelopes))}, len(envelopes)  # the bytes as they came
        by_route: dict[tuple[str, ...], list[bytes]] = defaultdict(list)
        for envelope, route in zip(envelopes, routes):
            if INDEX_STEP in route:
                by_route[route].append(envelope.encode())
        self.dropped.inc(len(envelopes) - sum(map(len, by_route.values())))
        return {route: (b",".join(encoded), len(encoded)) for route, encoded in by_route.items()}, len(envelopes)


def _tally(tallies: dict[str, list[int]], project_id: str, events: int, routed: int, dead: int) -> None:
    tally = tallies.setdefault(project_id, [0, 0, 0])
    tally[0] += events
    tally[1] += routed
    tally[2] += dead


Part = tuple[bytes, int]  # the inside of a JSON list of envelopes, and how many envelopes it holds


def chunks(parts: list[Part], max_bytes: int = MAX_MESSAGE_BYTES) -> list[list[Part]]:
    """Consecutive runs of parts whose bytes add up to at most ``max_bytes`` (at least one each)."""
    runs: list[list[Part]] = []
    run: list[Part] = []
    size = 0
    for part in parts:
        if run and size + len(part[0]) > max_bytes:
            runs.append(run)
            run, size = [], 0
        run.append(part)
        size += len(part[0])
    return [*runs, run] if run else runs


def checked_flow(project: Project | None) -> Flow | Rejected:
    """The project's validated flow, or the rejection its events get."""
    if project is None:
        return Rejected("missing_project", "no such project")
    try:
        return parse_flow(project.flow)
    except FlowError as exc:  # the admin API refuses such flows; this guards older records
        return Rejected("invalid_flow", str(exc))
