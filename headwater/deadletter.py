"""Dead letters: events a step refuses, as typed records that keep the original payload.

A dead-letter record (a JSON object on the ``headwater.dead`` topic) says which project it belongs
to, which step refused it, why (``reason``, from a closed set), which field (``path``), a readable
``detail``, where it came from (topic, partition, offset), and the original event or bytes. The
failed-events indexer loads these records into each project's ``failed_events`` table, and
``headwater replay`` re-injects them.
"""

from __future__ import annotations

import time

import orjson
from aiokafka.structs import ConsumerRecord

from headwater.envelope import Envelope
from headwater.relay_types import Output
from headwater.routing import PROJECT_HEADER, header_value
from headwater.settings import Settings
from headwater.topics import dead_letter_topic

# "refused": ClickHouse refused the record's rows for their content (indexer/refusals.py); "transform_*":
# a project's transformation raised, overran its time budget, or returned what is not events
# (processors/transform.py); "destination_refused": a destination refused the event for good
# (forwarder/service.py); "merge_*": the identity role refused the merge an identify or alias asked for
# (identity/graph.py)
REASONS = ("unparseable", "schema_violation", "size", "unknown_event", "missing_project", "invalid_flow",
           "refused", "transform_error", "transform_timeout", "transform_output", "destination_refused",
           "merge_illegal_id", "merge_already_identified", "merge_too_many_ids")
ERROR_HEADER = "hw-error"


class Rejected(Exception):
    """An event (or a whole record) that must go to the dead-letter topic.

    ``reason`` is one of :data:`REASONS`; ``detail`` explains it; ``path`` names the offending field.
    """

    def __init__(self, reason: str, detail: str = "", path: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.path = path


def dead_letter(settings: Settings, record: ConsumerRecord, error: Rejected, step: str,
                envelope: Envelope | None = None) -> Output:
    """The dead-letter record for ``envelope`` (one event of ``record``), or for the whole record."""
    raw_project = header_value(record.headers, PROJECT_HEADER)
    project_id = envelope.project_id if envelope else (raw_project.decode(errors="replace") if raw_project else None)
    value = {
        "v": 1, "project_id": project_id, "step": step, "reason": error.reason, "path": error.path,
        "detail": error.detail[:2000], "failed_at_ms": int(time.time() * 1000),
        "origin": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
        "message_id": envelope.message_id if envelope else None,
        "payload": envelope.to_dict() if envelope else record.value.decode(errors="replace"),
    }
    headers = [(PROJECT_HEADER, (project_id or "").encode()), (ERROR_HEADER, error.reason.encode())]
    key = envelope.key() if envelope else record.key
    return Output(dead_letter_topic(settings), key, orjson.dumps(value), headers, events=1, dead=True)
