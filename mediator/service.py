"""The mediator role.

It consumes the raw topic in the ``headwater-mediator`` group, looks up the project's flow, writes it
into the routing slip and produces the record to the first step's topic. It does not decode event
bodies: the collector puts the project id in the ``hw-project`` header, and a raw record already
holds the events of one project and one partition. Delivery and commit semantics are those of
:class:`headwater.relay.Relay`.
"""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from headwater.flow import DEFAULT_FLOW
from headwater.partitioning import PartitionMap
from headwater.relay import Output, Rejected, Relay
from headwater.routing import PROJECT_HEADER, encode_route
from headwater.settings import Settings
from headwater.topics import raw_topic, step_topic

GROUP_ID = "headwater-mediator"


def project_of(record: ConsumerRecord) -> str:
    for key, value in record.headers or ():
        if key == PROJECT_HEADER:
            return value.decode()
    raise Rejected("missing_project", "the raw record has no hw-project header")


class Mediator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay = Relay(settings, GROUP_ID, [raw_topic(settings)], self.route, PartitionMap())

    def flow_for(self, project_id: str) -> tuple[str, ...]:
        return DEFAULT_FLOW

    def route(self, record: ConsumerRecord) -> list[Output]:
        project_id = project_of(record)
        flow = self.flow_for(project_id)
        kept = [(k, v) for k, v in record.headers if k != PROJECT_HEADER]
        headers = [*kept, (PROJECT_HEADER, project_id.encode()), *encode_route(flow)]
        return [Output(step_topic(self.settings, flow[0]), record.key, record.value, headers)]
