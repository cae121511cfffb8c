"""The destination types, by the name a destination's ``type`` gives, and the check of a project's
destinations (used by the admin API, the CLI and ``headwater check`` before a change is stored, and
by the forwarder at start)."""

from __future__ import annotations

from typing import Protocol

from forwarder.email import Email
from forwarder.kafka_topic import KafkaTopic
from forwarder.lake import Lake
from forwarder.outcomes import Destination
from forwarder.segment import Segment
from forwarder.slack import Slack
from forwarder.webhook import Webhook
from headwater.destinations import DestinationError, DestinationSpec, parse_destinations
from headwater.flow import FlowError, parse_flow
from headwater.plugins import ENTRY_POINT_GROUP, installed
from headwater.projects.model import Project
from headwater.settings import Settings

ANONYMIZE_STEP = "anonymize"


class DestinationType(Protocol):
    @staticmethod
    def check(settings: dict, deployment: Settings) -> list[str]: ...

    def __call__(self, spec: DestinationSpec, settings: Settings) -> Destination: ...


TYPES: dict[str, DestinationType] = {"webhook": Webhook, "segment": Segment, "kafka": KafkaTopic, "lake": Lake,
                                     "slack": Slack, "email": Email}


def make_destination(spec: DestinationSpec, settings: Settings) -> Destination:
    return TYPES[spec.type](spec, settings)


def check_project(project: Project, settings: Settings) -> list[str]:
    """The problems of the project's destinations: their shape, their types' settings, and a flow
    that applies the privacy policy to every event (destinations get events after it)."""
    if not project.destinations:
        return []
    try:
        specs = parse_destinations(project.id, project.destinations)
    except DestinationError as exc:
        return [f"project {project.id}: {problem}" for problem in exc.problems]
    problems = []
    for i, spec in enumerate(specs):
        kind = TYPES.get(spec.type)
        if kind is None:
            problems.append(f"destinations[{i}].type: one of {', '.join(TYPES)}, not {spec.type!r}")
            continue
        problems += [f"destinations[{i}] ({spec.name}).settings.{p}" for p in kind.check(spec.settings, settings)]
        if spec.python and spec.python not in installed(settings.transforms_dir)[0]:
            problems.append(f"destinations[{i}] ({spec.name}).python: no transformation {spec.python!r} is installed "
                            f"(transforms_dir or the {ENTRY_POINT_GROUP} entry points)")
    problems += _privacy_problems(project)
    return [f"project {project.id}: {problem}" for problem in problems]


def _privacy_problems(project: Project) -> list[str]:
    try:
        flow = parse_flow(project.flow)
    except FlowError:
        return []  # the flow's own check names it
    if ANONYMIZE_STEP not in flow.steps or flow.conditions[flow.steps.index(ANONYMIZE_STEP)] is not None:
        return ["destinations: the flow must run anonymize on every event (no condition), so destinations "
                "never get what the privacy policy removes"]
    return []
