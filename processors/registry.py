"""Which class implements each step, what it needs, and how its configuration is checked."""

from __future__ import annotations

from headwater.flow import PROCESSOR_STEPS
from headwater.partitioning import PartitionMap
from headwater.projects.store import ProjectStore
from headwater.relay import Relay
from headwater.salts import DailySalts
from headwater.settings import Settings
from headwater.topics import step_topic
from processors.anonymize import Anonymize
from processors.base import Processor, group_id, transform_for
from processors.checks import ConfigError, check_deployment, require_valid
from processors.enrich import Enrich
from processors.validate import Validate


def build_processor(name: str, settings: Settings) -> tuple[Processor, tuple]:
    """The processor for step ``name`` and the resources (stores) it needs started."""
    if name not in PROCESSOR_STEPS:
        raise ValueError(f"unknown processor {name!r}; the steps are {', '.join(PROCESSOR_STEPS)}")
    store = ProjectStore(settings)
    # Checked before any processor is built, so a broken GeoIP database is reported with the rest.
    problems = check_deployment(settings)
    if problems:
        raise ConfigError(problems)
    if name == "validate":
        return Validate(settings, store), (store,)
    if name == "enrich":
        return Enrich(settings, store), (store,)
    if name == "anonymize":
        salts = DailySalts(settings)
        return Anonymize(settings, store, salts), (store, salts)
    raise ValueError(f"{name!r} is not a stateless processor; see build_role")


def build_role(name: str, settings: Settings):
    """The long-running role for step ``name``: the stateful sessionizer, or a relay."""
    if name == "sessionize":
        from processors.sessionize import Sessionizer

        return Sessionizer(settings)
    return build_relay(name, settings)


def build_relay(name: str, settings: Settings) -> Relay:
    processor, resources = build_processor(name, settings)
    partitions = PartitionMap()
    store = next((r for r in resources if isinstance(r, ProjectStore)), None)
    check = (lambda: require_valid(settings, list(store.projects.values()))) if store else None
    return Relay(settings, group_id(name), [step_topic(settings, name)], transform_for(processor, partitions),
                 partitions, name, resources, check)
