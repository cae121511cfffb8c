"""The mediator role.

It consumes the raw topic in the ``headwater-mediator`` group, looks up the project's flow, writes it
into the routing slip and produces the record to the first step's topic. It does not decode event
bodies: the collector puts the project id in the ``hw-project`` header, and a raw record already
holds the events of one project and one partition, so records of one partition and project merge
into one. Delivery and commit semantics are those of :class:`headwater.relay.Relay`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected, dead_letter
from headwater.flow import DEFAULT_FLOW, FlowError, validate_flow
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.relay import Relay
from headwater.relay_types import Output
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, encode_route, event_count, header_value
from headwater.settings import Settings
from headwater.topics import MAX_MESSAGE_BYTES, raw_topic, step_topic

GROUP_ID = "headwater-mediator"


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
        self.relay = Relay(settings, GROUP_ID, [raw_topic(settings)], self.route, PartitionMap(), "mediator",
                           (self.store,), check, input_codec="collector_compression")

    def flow_for(self, project_id: str) -> tuple[str, ...]:
        """The project's flow, looked up on every record (and validated once per change of the
        project), so a change applies to the events routed after it without a restart."""
        flow = self.store.derived(project_id, "flow", checked_flow)
        if isinstance(flow, Rejected):
            raise flow
        return flow


    def route(self, records: list[ConsumerRecord]) -> list[Output]:
        """Merge the records of each (partition, project) into one, without decoding the events (a
        record's value is a JSON list, so lists join by their brackets), and send it to the first
        step of the project's flow."""
        outputs, merged = [], defaultdict(list)
        for record in records:
            try:
                project_id = project_of(record)
                flow = self.flow_for(project_id)
            except Rejected as error:
                outputs.append(dead_letter(self.settings, record, error, "mediator"))
                continue
            merged[(record.partition, project_id, flow)].append(record)
        for (_, project_id, flow), group in merged.items():
            for chunk in chunks(group):
                value = b"[" + b",".join(r.value[1:-1] for r in chunk) + b"]"
                events = sum(event_count(r.headers) for r in chunk)
                headers = [(PROJECT_HEADER, project_id.encode()), (EVENTS_HEADER, str(events).encode()),
                           *encode_route(flow)]
                outputs.append(Output(step_topic(self.settings, flow[0]), chunk[0].key, value, headers, events))
        return outputs


def chunks(records: list[ConsumerRecord], max_bytes: int = MAX_MESSAGE_BYTES) -> list[list[ConsumerRecord]]:
    """Consecutive runs of records whose values add up to at most ``max_bytes`` (at least one each)."""
    runs: list[list[ConsumerRecord]] = []
    run: list[ConsumerRecord] = []
    size = 0
    for record in records:
        if run and size + len(record.value) > max_bytes:
            runs.append(run)
            run, size = [], 0
        run.append(record)
        size += len(record.value)
    return [*runs, run] if run else runs


def checked_flow(project: Project | None) -> tuple[str, ...] | Rejected:
    """The project's validated flow, or the rejection its events get."""
    if project is None:
        return Rejected("missing_project", "no such project")
    if project.flow is None:
        return DEFAULT_FLOW
    try:
        return validate_flow(project.flow)
    except FlowError as exc:  # the admin API refuses such flows; this guards older records
        return Rejected("invalid_flow", str(exc))
