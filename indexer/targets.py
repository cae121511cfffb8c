"""The tables the indexer loads, each by its own consumer group: where its records come from and
how they become rows."""

from __future__ import annotations

import dataclasses
from typing import Callable

import orjson
from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected
from headwater.envelope import Envelope, decode_batch
from headwater.flow import INDEX_STEP
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.topics import dead_letter_topic, sessions_topic, step_topic
from indexer.rows import EVENT_COLUMNS, FAILED_COLUMNS, event_row, failed_row, session_row
from processors.sessions import SESSION_COLUMNS
from processors.anonymize import PrivacyPolicy, anonymise_ips

UNKNOWN_PROJECT = "_unknown"  # dead letters whose project is not known land in hw__unknown
Rows = Callable[[ConsumerRecord], list[tuple[str, tuple]]]


@dataclasses.dataclass(frozen=True)
class Target:
    table: str
    topic: str
    group_id: str
    columns: tuple[str, ...]
    rows: Rows  # (project id, row) pairs; raises Rejected for a record that is not readable


def event_rows(record: ConsumerRecord) -> list[tuple[str, tuple]]:
    try:
        envelopes = decode_batch(record.value)
    except ValueError as exc:
        raise Rejected("unparseable", str(exc)) from exc
    return [(e.project_id, event_row(e, record.partition, record.offset)) for e in envelopes]


def session_rows(record: ConsumerRecord) -> list[tuple[str, tuple]]:
    try:
        rows = orjson.loads(record.value)
        return [(row[0], session_row(row)) for row in rows]
    except (orjson.JSONDecodeError, TypeError, IndexError, ValueError) as exc:
        raise Rejected("unparseable", str(exc)) from exc


def clean_failed_payload(payload: object, policy: PrivacyPolicy) -> object:
    """A dead letter may hold the raw IP (validation runs before anonymisation): apply the project's
    IP policy, as the anonymize step would, before it is stored."""
    try:
        envelope = Envelope.from_dict(payload)
    except ValueError:
        withheld = policy.anonymises_ip and payload is not None
        return "[payload withheld: it could not be read and the project anonymises IPs]" if withheld else payload
    anonymise_ips(policy, envelope)
    return envelope


def failed_rows_for(store: ProjectStore) -> Rows:
    def rows(record: ConsumerRecord) -> list[tuple[str, tuple]]:
        try:
            dead = orjson.loads(record.value)
            project_id = dead.get("project_id") or UNKNOWN_PROJECT
        except (orjson.JSONDecodeError, AttributeError) as exc:
            dead, project_id = {"reason": "unparseable", "detail": str(exc), "step": "index"}, UNKNOWN_PROJECT
            dead["payload"] = record.value.decode(errors="replace")
        project = store.get(project_id)
        if project is None:
            project_id = UNKNOWN_PROJECT
        payload = clean_failed_payload(dead.get("payload"), PrivacyPolicy.of(project))
        return [(project_id, failed_row(dead, payload))]

    return rows


def target(name: str, settings: Settings, store: ProjectStore) -> Target:
    if name == "events":
        return Target("events", step_topic(settings, INDEX_STEP), "headwater-indexer-events", EVENT_COLUMNS,
                      event_rows)
    if name == "failed_events":
        return Target("failed_events", dead_letter_topic(settings), "headwater-indexer-failed-events",
                      FAILED_COLUMNS, failed_rows_for(store))
    if name == "sessions":
        return Target("sessions", sessions_topic(settings), "headwater-indexer-sessions", SESSION_COLUMNS,
                      session_rows)
    raise ValueError(f"unknown table {name!r}: events, sessions or failed_events")
