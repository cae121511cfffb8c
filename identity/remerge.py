"""``headwater remerge --project P [--from DATE] [--to DATE]``: apply a project's stored ``identify`` and
``alias`` calls again.

For two cases the identity role alone does not cover:

- calls older than the stored events Kafka keeps (7 days), which a role started on an upgraded install
  never read;
- merges refused before a project setting changed (``identity.merge_identified``, ``identity.max_ids``).

The calls are read from the project's ``events`` table in the order they were received and written, in
batches of at most :data:`BATCH_BYTES`, to ``headwater.identity-commands``
(:mod:`headwater.identity_commands`). The role applies them by the same rules as live calls, in its
transaction: a merge already made changes nothing, so a remerge can run again, and a refusal is a dead
letter again (step ``identity``, request id ``remerge``). Live calls keep arriving meanwhile; only which
merges are refused can depend on how the two interleave. The command then waits for the role and the
``person_ids`` indexer, as ``headwater erase`` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import datetime

from clickhouse_driver import Client

from headwater.clickhouse import project_database
from headwater.envelope import Envelope, encode_batch
from headwater.identity_commands import send_and_wait
from headwater.settings import Settings

BATCH_BYTES = 1024 * 1024  # well under a record's limit (4 MiB), whatever the ids' lengths
REQUEST_ID = "remerge"


@dataclasses.dataclass
class RemergeReport:
    calls: int  # identify and alias calls sent again
    batches: int  # records written to headwater.identity-commands
    merged_ids_before: int  # distinct ids with a person in person_ids
    merged_ids_after: int
    identity: str  # "applied", or "pending" when the role or the person_ids indexer did not answer in time


def stored_calls(client: Client, project_id: str, since: datetime | None, until: datetime | None) -> Iterator[Envelope]:
    """The project's stored ``identify`` and ``alias`` calls with a user id (with another id they merge;
    alone, an ``identify`` marks its user id identified), oldest received first, as envelopes the identity
    role reads."""
    db, params = project_database(project_id), {"since": since, "until": until}
    bounds = "".join([" AND timestamp >= %(since)s" if since else "", " AND timestamp < %(until)s" if until else ""])
    rows = client.execute_iter(
        f"""SELECT message_id, type, user_id, anonymous_id, previous_id, toUnixTimestamp64Milli(received_at)
FROM {db}.events
WHERE type IN ('identify', 'alias') AND user_id != ''{bounds}
ORDER BY received_at, message_id""", params, settings={"max_block_size": 10_000})
    for message_id, kind, user_id, anonymous_id, previous_id, received_at_ms in rows:
        other = {"previousId": previous_id} if kind == "alias" else {"anonymousId": anonymous_id or None}
        event = {"type": kind, "messageId": message_id, "userId": user_id, **other}
        yield Envelope(project_id, message_id, received_at_ms, REQUEST_ID, event)


def batches(calls: Iterator[Envelope], limit_bytes: int = BATCH_BYTES) -> Iterator[tuple[bytes, int]]:
    """``calls`` as records of at most ``limit_bytes`` (one call may exceed it alone), each with its count."""
    batch: list[Envelope] = []
    size = 0
    for call in calls:
        grows = len(encode_batch([call]))
        if batch and size + grows > limit_bytes:
            yield encode_batch(batch), len(batch)
            batch, size = [], 0
        batch.append(call)
        size += grows
    if batch:
        yield encode_batch(batch), len(batch)


def merged_ids(client: Client, project_id: str) -> int:
    return client.execute(f"SELECT uniqExact(distinct_id) FROM {project_database(project_id)}.person_ids")[0][0]


def remerge(client: Client, settings: Settings, project_id: str, since: datetime | None = None,
            until: datetime | None = None, timeout_s: float = 120.0) -> RemergeReport:
    before = merged_ids(client, project_id)
    counted = {"calls": 0, "batches": 0}

    def records() -> Iterator[bytes]:
        for value, calls in batches(stored_calls(client, project_id, since, until)):
            counted["calls"] += calls
            counted["batches"] += 1
            yield value

    identity = asyncio.run(send_and_wait(settings, records(), timeout_s))
    return RemergeReport(counted["calls"], counted["batches"], before, merged_ids(client, project_id), identity)
