"""The one registry of the flow's processor steps: for each step's name, the class that runs it, the
check of a project's options for it and the check of its deployment settings.

The order of the steps, with the reason for it, and what each step is to the pipeline (stateful,
reads visits) are the flow's (:mod:`headwater.flow`), so that the mediator and the relays need not
load the steps to route events through them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from headwater.flow import PROCESSOR_STEPS
from headwater.privacy import check_privacy
from headwater.projects.model import Project
from headwater.settings import Settings
from processors import enrich, sessions, transform, validate
from processors.anonymize import Anonymize
from processors.base import Processor
from processors.enrich import Enrich
from processors.sessionize import Sessionizer
from processors.transform import Transform
from processors.validate import Validate


def no_settings(settings: Settings) -> list[str]:
    return []


@dataclasses.dataclass(frozen=True)
class Step:
    runs: type[Processor] | type[Sessionizer]  # a relay transform (stateless), or a stateful step's role
    check_project: Callable[[Project], list[str]]  # the project's options for the step
    check_settings: Callable[[Settings], list[str]] = no_settings  # the deployment's settings for it

    def processor(self) -> type[Processor]:
        if not issubclass(self.runs, Processor):
            raise ValueError(f"{self.runs.__name__} is not a stateless processor")
        return self.runs

    def stateful_role(self) -> Callable[..., Sessionizer]:
        if not issubclass(self.runs, Sessionizer):
            raise ValueError(f"{self.runs.__name__} is not a stateful step")
        return self.runs.role


STEPS: dict[str, Step] = {
    "validate": Step(Validate, validate.check_project, validate.check_settings),
    "enrich": Step(Enrich, enrich.check_project, enrich.check_settings),
    "anonymize": Step(Anonymize, lambda project: check_privacy(project.privacy)),
    "transform": Step(Transform, transform.check_project, transform.check_settings),
    "sessionize": Step(Sessionizer, sessions.check_project),
}

if tuple(STEPS) != PROCESSOR_STEPS:  # the flow names the steps; this table implements exactly those
    raise ImportError(f"processors.steps implements {list(STEPS)}, the flow has {list(PROCESSOR_STEPS)}")
for _name, _step in STEPS.items():  # a step's metrics, topics and groups are named by its class
    if _step.runs.name != _name:
        raise ImportError(f"processors.steps: {_name!r} runs {_step.runs.__name__}, named {_step.runs.name!r}")
