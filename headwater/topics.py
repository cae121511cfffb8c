"""Kafka topic names and definitions, written once.

Every topic Headwater uses is listed in :func:`topic_specs`; the local stack creates them from this
list, and the deployment files are generated from it.
"""

from __future__ import annotations

import dataclasses

from headwater.flow import STEP_ORDER
from headwater.settings import Settings

RAW = "raw"
DEAD = "dead"
PROJECTS = "projects"
SALTS = "salts"
SESSIONS = "sessions"
SESSION_STATE = "sessionize-state"
STEP_COUNTS = "step-counts"
FORWARDER_STATUS = "forwarder-status"
IDENTITY = "identity"
IDENTITY_COMMANDS = "identity-commands"
ALERTS = "alerts"
ALERTS_STATE = "alerts-state"
TAGS = "tags"
DAY_MS = 24 * 3600 * 1000


TOPIC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the most a topic accepts in one record
# where the collector, the mediator and the processors cut the records they produce: smaller records
# keep batches, and latency, short
MAX_MESSAGE_BYTES = 256 * 1024


@dataclasses.dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int | None  # None: compacted, kept forever
    max_message_bytes: int = TOPIC_MAX_MESSAGE_BYTES

    @property
    def config(self) -> dict[str, str]:
        config = {"max.message.bytes": str(self.max_message_bytes)}
        if self.retention_ms is None:
            config["cleanup.policy"] = "compact"
        else:
            config["retention.ms"] = str(self.retention_ms)
        return config


def topic_name(settings: Settings, suffix: str) -> str:
    return f"{settings.topic_prefix}.{suffix}"


def raw_topic(settings: Settings) -> str:
    return topic_name(settings, RAW)


def dead_letter_topic(settings: Settings) -> str:
    return topic_name(settings, DEAD)


def projects_topic(settings: Settings) -> str:
    return topic_name(settings, PROJECTS)


def salts_topic(settings: Settings) -> str:
    return topic_name(settings, SALTS)


def sessions_topic(settings: Settings) -> str:
    """Session rows (sign and version), for the sessions indexer."""
    return topic_name(settings, SESSIONS)


def session_state_topic(settings: Settings) -> str:
    """The sessionizer's changelog: one compacted record per (project, visitor)."""
    return topic_name(settings, SESSION_STATE)


def identity_topic(settings: Settings) -> str:
    """Which distinct ids each person holds (:mod:`headwater.identity`): one compacted record per merged id."""
    return topic_name(settings, IDENTITY)


def identity_commands_topic(settings: Settings) -> str:
    """What the identity role is asked to do besides merging: erase a person (``headwater erase``)."""
    return topic_name(settings, IDENTITY_COMMANDS)


def alerts_topic(settings: Settings) -> str:
    """The alerts the alerts role raises (:mod:`headwater.alerts`), for the channels and the indexer."""
    return topic_name(settings, ALERTS)


def alerts_state_topic(settings: Settings) -> str:
    """The alerts role's changelog: windows, cooldowns, visitors' last events and traits."""
    return topic_name(settings, ALERTS_STATE)


def tags_topic(settings: Settings) -> str:
    """The tag manager's containers (:mod:`headwater.tags.store`): each one's head and its versions."""
    return topic_name(settings, TAGS)


def step_counts_topic(settings: Settings) -> str:
    """Each process's counts of events in and out of the steps it runs (:mod:`headwater.step_counts`)."""
    return topic_name(settings, STEP_COUNTS)


def forwarder_status_topic(settings: Settings) -> str:
    """Each forwarder's state of each destination it runs (headwater/destination_status.py)."""
    return topic_name(settings, FORWARDER_STATUS)


def step_topic(settings: Settings, step: str) -> str:
    """The topic that the processor (or indexer) for ``step`` consumes."""
    return topic_name(settings, f"step.{step}")


def processor_group(step: str) -> str:
    """The consumer group of a processor step: one per step, whichever process runs it."""
    return f"headwater-processor-{step}"


MEDIATOR_GROUP = "headwater-mediator"
EVENTS_INDEXER_GROUP = "headwater-indexer-events"
IDENTITY_GROUP = "headwater-identity"
PERSON_IDS_INDEXER_GROUP = "headwater-indexer-person-ids"
ALERTS_GROUP = "headwater-alerts"
ALERTS_INDEXER_GROUP = "headwater-indexer-alerts"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    steps = [step_topic(settings, step) for step in STEP_ORDER]
    names = [raw_topic(settings), *steps, dead_letter_topic(settings), sessions_topic(settings)]
    pipeline = [TopicSpec(name, settings.topic_partitions, 7 * DAY_MS) for name in names]
    pipeline.append(TopicSpec(step_counts_topic(settings), 1, 7 * DAY_MS))  # a few records a minute
    pipeline.append(TopicSpec(identity_commands_topic(settings), 1, 7 * DAY_MS))
    pipeline.append(TopicSpec(alerts_topic(settings), 1, 7 * DAY_MS))
    pipeline.append(TopicSpec(session_state_topic(settings), settings.topic_partitions, None))
    compacted = [TopicSpec(projects_topic(settings), 1, None), TopicSpec(salts_topic(settings), 1, None),
                 TopicSpec(forwarder_status_topic(settings), 1, None),
                 # one partition: merges apply in one order, and the identity role restores all of it
                 TopicSpec(identity_topic(settings), 1, None),
                 # one partition: a threshold counts every partition's events, so the alerts role has one writer
                 TopicSpec(alerts_state_topic(settings), 1, None),
                 TopicSpec(tags_topic(settings), 1, None)]
    return [*pipeline, *compacted]
