"""The mediator role.

It consumes the raw topic in the ``headwater-mediator`` group, looks up the project's flow, writes it
into the routing slip and produces the record to the first step's topic. It does not decode event
bodies: the collector puts the project id in the ``hw-project`` header, and a raw record already
holds the events of one project and one partition. Delivery and commit semantics are those of
:class:`headwater.relay.Relay`.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from headwater.flow import DEFAULT_FLOW, FlowError, validate_flow
from headwater.partitioning import PartitionMap
from headwater.projects.store import ProjectStore
from headwater.deadletter import Rejected
from headwater.relay import Relay
from headwater.relay_types import Output
from headwater.routing import PROJECT_HEADER, encode_route
from headwater.settings import Settings
from headwater.topics import raw_topic, step_topic
from processors.checks import require_valid

GROUP_ID = "headwater-mediator"


def project_of(record: ConsumerRecord) -> str:
    for key, value in record.headers or ():
        if key == PROJECT_HEADER:
            return value.decode()
    raise Rejected("missing_project", "the raw record has no hw-project header")


class Mediator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ProjectStore(settings)
        check = lambda: require_valid(settings, list(self.store.projects.values()))  # noqa: E731
        self.relay = Relay(settings, GROUP_ID, [raw_topic(settings)], self.route, PartitionMap(), "mediator",
                           (self.store,), check)

    def flow_for(self, project_id: str) -> tuple[str, ...]:
        """The project's flow, read from the project store on every record, so a change applies to
        the events routed after it without a restart."""
        project = self.store.get(project_id)
        if project is None:
            raise Rejected("missing_project", f"no project {project_id!r}")
        if project.flow is None:
            return DEFAULT_FLOW
        try:
            return validate_flow(project.flow)
        except FlowError as exc:  # the admin API refuses such flows; this guards older records
            raise Rejected("invalid_flow", str(exc)) from exc

    def route(self, record: ConsumerRecord) -> list[Output]:
        project_id = project_of(record)
        flow = self.flow_for(project_id)
        kept = [(k, v) for k, v in record.headers if k != PROJECT_HEADER]
        headers = [*kept, (PROJECT_HEADER, project_id.encode()), *encode_route(flow)]
        return [Output(step_topic(self.settings, flow[0]), record.key, record.value, headers, events=0)]
