"""The tables the indexer loads, each by its own consumer group: where their records come from and how
a batch of them is inserted.

Every target stores the Kafka partition and offset of the record each row came from
(``kafka_partition``, ``kafka_offset``); the indexer reads them back after a rebalance or a restart to
skip records whose rows are already in the table (see :mod:`indexer.service`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import orjson
from aiokafka.structs import ConsumerRecord
from clickhouse_driver import Client

from headwater.deadletter import Rejected
from headwater.envelope import Envelope, decode_batch
from headwater.flow import INDEX_STEP
from headwater.identity import Link, split_key
from headwater.migrations.columns import (
    ALERT_COLUMNS,
    FAILED_COLUMNS,
    PERSON_ID_COLUMNS,
    SESSION_COLUMNS,
    STEP_COUNT_COLUMNS,
)
from headwater.privacy import PrivacyPolicy, apply_policy
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.routing import PROJECT_HEADER, SESSIONS_HEADER, event_count, header_value
from headwater.settings import Settings
from headwater.topics import (
    ALERTS_INDEXER_GROUP,
    EVENTS_INDEXER_GROUP,
    PERSON_IDS_INDEXER_GROUP,
    alerts_topic,
    dead_letter_topic,
    identity_topic,
    sessions_topic,
    step_counts_topic,
    step_topic,
)
from indexer import events_sql
from indexer.rows import alert_row, failed_row, person_id_row, session_row, step_count_row

UNKNOWN_PROJECT = "_unknown"  # dead letters whose project is not known land in hw__unknown


@dataclasses.dataclass(slots=True)
class Item:
    """One record's share of a batch for one project: the rows it gives, or (for ``events``) the raw
    value that ClickHouse decodes itself."""

    record: ConsumerRecord
    rows: list[tuple]  # empty for events
    events: int


class Target(Protocol):
    table: str
    topic: str
    group_id: str

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        """The record's (project id, item) pairs; raises ``Rejected`` for a record that is not readable."""

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        """Insert the items with one INSERT carrying ``token`` as its ``insert_deduplication_token``.
        Returns the items that turned out unreadable (they inserted nothing)."""


def insert_rows(client: Client, table: str, columns: tuple[str, ...], items: list[Item], token: str) -> None:
    rows = [row + (item.record.partition, item.record.offset) for item in items for row in item.rows]
    client.execute(
        f"INSERT INTO {table} ({', '.join(columns)}, kafka_partition, kafka_offset) VALUES",
        [list(column) for column in zip(*rows)], columnar=True,
        settings={"insert_deduplication_token": token},
    )


def by_project(record: ConsumerRecord, rows: list[tuple[str, tuple]]) -> list[tuple[str, Item]]:
    """The record's ``(project id, row)`` pairs as one item per project, in their order."""
    items: dict[str, Item] = {}
    for project_id, row in rows:
        items.setdefault(project_id, Item(record, [], 0)).rows.append(row)
    for item in items.values():
        item.events = len(item.rows)
    return list(items.items())


class EventsTarget:
    """``events``: ClickHouse decodes the envelopes (see :mod:`indexer.events_sql`)."""

    table = "events"
    group_id = EVENTS_INDEXER_GROUP

    def __init__(self, settings: Settings) -> None:
        self.topic = step_topic(settings, INDEX_STEP)

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        project = header_value(record.headers, PROJECT_HEADER)
        count = event_count(record.headers)
        if project is None or not count:  # not from our processors: decode it here, once
            try:
                envelopes = decode_batch(record.value)
            except ValueError as exc:
                raise Rejected("unparseable", str(exc)) from exc
            return [(envelopes[0].project_id, Item(record, [], len(envelopes)))]
        return [(project.decode(errors="replace"), Item(record, [], count))]

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        data = [(item.record.value.decode(errors="replace"),
                 (header_value(item.record.headers, SESSIONS_HEADER) or b"").decode(errors="replace"),
                 item.record.partition, item.record.offset) for item in items]
        client.execute(events_sql.insert_sql(db, project_id), data, settings={
            "insert_deduplication_token": token,
            # a client's retries inside one batch collapse on merge like any others: applying the
            # merge to each insert (the default) costs a third of the INSERT
            "optimize_on_insert": 0,
        })
        written = client.last_query.progress.written_rows if client.last_query else 0
        if written >= sum(item.events for item in items):
            return []
        return self._unreadable(client, project_id, items, data)

    @staticmethod
    def _unreadable(client: Client, project_id: str, items: list[Item], data: list[tuple]) -> list[Item]:
        names = [name for name, _ in events_sql.INPUT_COLUMNS]
        bad = set(client.execute(events_sql.unreadable_sql("batch", project_id), external_tables=[
            {"name": "batch", "structure": list(events_sql.INPUT_COLUMNS),
             "data": [dict(zip(names, row)) for row in data]}]))
        return [item for item in items if (item.record.partition, item.record.offset) in bad]


class SessionsTarget:
    """``sessions``: the sessionizer's rows, already in column order."""

    table = "sessions"
    group_id = "headwater-indexer-sessions"

    def __init__(self, settings: Settings) -> None:
        self.topic = sessions_topic(settings)

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        try:
            rows = [(row[0], session_row(row)) for row in orjson.loads(record.value)]
        except (orjson.JSONDecodeError, TypeError, IndexError, ValueError) as exc:
            raise Rejected("unparseable", str(exc)) from exc
        return by_project(record, rows)

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        insert_rows(client, f"{db}.sessions", SESSION_COLUMNS, items, token)
        return []


WITHHELD = "[payload withheld: it could not be read, so the project's privacy policy could not be applied]"


def clean_failed_payload(payload: object, policy: PrivacyPolicy, project: Project | None) -> object:
    """A dead letter holds the event as it was when a step refused it, often before anonymisation:
    apply the project's whole privacy policy, as the anonymize step would, before it is stored. A
    cookieless project's client ids are removed (its stored ids are made by the anonymize step). A
    payload that is not an envelope is withheld unless the policy would change nothing."""
    try:
        envelope = Envelope.from_dict(payload)
    except ValueError:
        return WITHHELD if payload is not None and policy != PrivacyPolicy(ip="keep") else payload
    apply_policy(policy, project, envelope)
    if policy.cookieless:
        for name in ("anonymousId", "userId"):
            envelope.event.pop(name, None)
    return envelope.to_dict()


class FailedEventsTarget:
    """``failed_events``: dead letters, with the payload cleaned by the project's IP policy."""

    table = "failed_events"
    group_id = "headwater-indexer-failed-events"

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        self.topic = dead_letter_topic(settings)
        self.store = store

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        try:
            dead = orjson.loads(record.value)
            project_id = dead.get("project_id") or UNKNOWN_PROJECT
        except (orjson.JSONDecodeError, AttributeError) as exc:
            dead, project_id = {"reason": "unparseable", "detail": str(exc), "step": "index"}, UNKNOWN_PROJECT
            dead["payload"] = record.value.decode(errors="replace")
        project = self.store.get(project_id)
        if project is None:
            project_id = UNKNOWN_PROJECT
        payload = clean_failed_payload(dead.get("payload"), PrivacyPolicy.of(project), project)
        return [(project_id, Item(record, [failed_row(dead, payload)], 1))]

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        insert_rows(client, f"{db}.failed_events", FAILED_COLUMNS, items, token)
        return []


class StepCountsTarget:
    """``step_counts``: what each process's steps did to each project's events, a minute at a time
    (:mod:`headwater.step_counts`). Rows of a project that is not (or no longer) configured are left out."""

    table = "step_counts"
    group_id = "headwater-indexer-step-counts"

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        self.topic = step_counts_topic(settings)
        self.store = store

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        try:
            rows = [step_count_row(row) for row in orjson.loads(record.value)]
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise Rejected("unparseable", str(exc)) from exc
        return by_project(record, [(project_id, row) for project_id, row in rows
                                   if self.store.get(project_id) is not None])

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        insert_rows(client, f"{db}.step_counts", STEP_COUNT_COLUMNS, items, token)
        return []


class PersonIdsTarget:
    """``person_ids``: the identity role's changelog, a row per changed link. A record whose id was
    erased (no value) inserts nothing: the erase removes the id's rows itself."""

    table = "person_ids"
    group_id = PERSON_IDS_INDEXER_GROUP

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        self.topic = identity_topic(settings)
        self.store = store

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        project_id, distinct_id = split_key(record.key or b"")
        if record.value is None or self.store.get(project_id) is None:
            return []
        try:
            link = Link.load(record.value)
        except ValueError as exc:
            raise Rejected("unparseable", str(exc)) from exc
        return [(project_id, Item(record, [person_id_row(distinct_id, link)], 1))]

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        insert_rows(client, f"{db}.person_ids", PERSON_ID_COLUMNS, items, token)
        return []


class AlertsTarget:
    """``alerts``: what the alerts role raised (:mod:`headwater.alerts`), a row per alert. Alerts of a
    project that is not (or no longer) configured are left out."""

    table = "alerts"
    group_id = ALERTS_INDEXER_GROUP

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        self.topic = alerts_topic(settings)
        self.store = store

    def items(self, record: ConsumerRecord) -> list[tuple[str, Item]]:
        try:
            alerts = decode_batch(record.value or b"")
        except ValueError as exc:
            raise Rejected("unparseable", str(exc)) from exc
        return by_project(record, [(alert.project_id, alert_row(alert)) for alert in alerts
                                   if self.store.get(alert.project_id) is not None])

    def insert(self, client: Client, db: str, project_id: str, items: list[Item], token: str) -> list[Item]:
        insert_rows(client, f"{db}.alerts", ALERT_COLUMNS, items, token)
        return []


TABLES = ("events", "sessions", "failed_events", "step_counts", "person_ids", "alerts")


def target(name: str, settings: Settings, store: ProjectStore) -> Target:
    if name == "events":
        return EventsTarget(settings)
    if name == "failed_events":
        return FailedEventsTarget(settings, store)
    if name == "sessions":
        return SessionsTarget(settings)
    if name == "step_counts":
        return StepCountsTarget(settings, store)
    if name == "person_ids":
        return PersonIdsTarget(settings, store)
    if name == "alerts":
        return AlertsTarget(settings, store)
    raise ValueError(f"unknown table {name!r}: {', '.join(TABLES)}")
