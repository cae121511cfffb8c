"""Rows the indexer builds in Python: dead letters into ``failed_events``, the sessionizer's rows into
``sessions``, the steps' counts into ``step_counts``, merges into ``person_ids`` and alerts into
``alerts``. (``events`` rows are built by ClickHouse: see
:mod:`indexer.events_sql`.)"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from headwater.envelope import Envelope
from headwater.identity import Link
from headwater.migrations.columns import SESSION_COLUMNS
from headwater.timeutil import epoch_ms, from_epoch_ms


def _text(value: object) -> str:
    return "" if value is None else str(value)


def failed_row(record: dict, payload: object) -> tuple:
    """One ``failed_events`` row from a dead-letter record (``payload`` already cleaned)."""
    origin = record.get("origin") or {}
    return (
        from_epoch_ms(int(record.get("failed_at_ms") or 0)), _text(record.get("step")), _text(record.get("reason")),
        _text(record.get("path")), _text(record.get("detail")), _text(record.get("message_id")),
        _text(origin.get("topic")), int(origin.get("partition") or 0), int(origin.get("offset") or 0),
        payload if isinstance(payload, str) else orjson.dumps(payload).decode(),
    )


OLDER_ROW = len(SESSION_COLUMNS) - 2  # before duration_ms and is_bot


def session_row(row: list) -> tuple:
    """A ``sessions`` row as the sessionizer emitted it, with its times as datetimes. A row of an older
    sessionizer, without ``duration_ms`` and ``is_bot``, gets the duration from its start and end and
    is taken as no bot's."""
    if len(row) == OLDER_ROW:
        row = [*row[:7], row[5] - row[4], *row[7:-4], False, *row[-4:]]
    return (*row[:4], from_epoch_ms(row[4]), from_epoch_ms(row[5]), *row[6:])


def step_count_row(row: list) -> tuple[str, tuple]:
    """The project and ``step_counts`` row of one counted row ``[minute (epoch s), project, step, in,
    out, dropped, dead-lettered]``; raises ``ValueError`` (or ``TypeError``) for anything else."""
    minute, project_id, step, *counts = row
    if not isinstance(project_id, str) or not isinstance(step, str) or len(counts) != 4:
        raise ValueError(f"not a step count: {row!r:.200}")
    return project_id, (datetime.fromtimestamp(int(minute), UTC), step, *(max(0, int(n)) for n in counts))


def person_id_row(distinct_id: str, link: Link) -> tuple:
    """One ``person_ids`` row (:data:`PERSON_ID_COLUMNS`) from an identity changelog record."""
    return distinct_id, link.person, link.identified, link.version, from_epoch_ms(link.at_ms)


def alert_row(alert: Envelope) -> tuple:
    """One ``alerts`` row (:data:`ALERT_COLUMNS`) from an alert (:mod:`headwater.alerts`)."""
    properties = alert.event.get("properties") or {}
    details = {k: v for k, v in properties.items() if k not in ("rule", "kind", "subject", "text", "quiet")}
    at = epoch_ms(alert.event.get("timestamp")) or alert.received_at_ms
    return (alert.message_id, str(properties.get("rule", "")), str(properties.get("kind", "")),
            str(properties.get("subject", "")), from_epoch_ms(at), from_epoch_ms(alert.received_at_ms),
            str(properties.get("text", "")), bool(properties.get("quiet")), orjson.dumps(details).decode())
