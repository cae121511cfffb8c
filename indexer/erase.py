"""``headwater erase --project P --user U``: delete a person's data (right to erasure).

The person is every id merged with the id given (a user id or an anonymous id; see
:mod:`headwater.identity`), and every anonymous id that ever appeared on an event with one of its user
ids. In this order:

1. the identity role is asked to forget the person (a command on ``headwater.identity-commands``): it
   drops the ids from its state and writes a tombstone for each to ``headwater.identity``, which
   compaction then removes; the command waits until the role has committed that, and until the
   ``person_ids`` indexer has loaded everything before the tombstones, so no row of the person is
   loaded after step 2;
2. ClickHouse mutations delete the ids' rows from ``events``, ``sessions``, ``failed_events`` and
   ``person_ids``, and are waited for, so when the command returns the rows are gone from every query.

When the identity role does not answer within ``timeout_s`` (it is not running), step 2 still runs and
the report says ``identity: "pending"``: the role forgets the person when it starts. Kafka keeps raw
events for the topics' retention (7 days) and the sessionizer's changelog keeps the visitor's
open-session state until it goes idle; both age out by themselves.
"""

from __future__ import annotations

import asyncio
import dataclasses

from clickhouse_driver import Client

from analytics.people import ids_of
from headwater.clickhouse import project_database
from headwater.identity import erase_command
from headwater.identity_commands import APPLIED, send_and_wait
from headwater.settings import Settings

WAIT = {"mutations_sync": 2}


@dataclasses.dataclass
class ErasureReport:
    ids: list[str]
    events: int
    sessions: int
    failed_events: int
    person_ids: int
    identity: str  # "forgotten", or "pending" when the identity role did not answer


def person_ids(client: Client, project_id: str, given: str) -> list[str]:
    """Every id of the person ``given`` belongs to, and the anonymous ids seen with its user ids."""
    ids = {given, *ids_of(client, project_id, given)[1]}
    linked = client.execute(f"SELECT DISTINCT anonymous_id FROM {project_database(project_id)}.events "
                            "WHERE user_id IN %(ids)s AND anonymous_id != ''", {"ids": sorted(ids)})
    return sorted(ids | {row[0] for row in linked})


def erase(client: Client, settings: Settings, project_id: str, given: str, timeout_s: float = 60.0) -> ErasureReport:
    db = project_database(project_id)
    ids = person_ids(client, project_id, given)
    applied = asyncio.run(send_and_wait(settings, [erase_command(project_id, ids)], timeout_s))
    identity = "forgotten" if applied == APPLIED else "pending"
    where = {
        "events": "user_id IN %(ids)s OR anonymous_id IN %(ids)s",
        "sessions": "user_id IN %(ids)s OR visitor_id IN %(ids)s",
        "failed_events": "message_id IN (SELECT message_id FROM {db}.events WHERE {events})",
        "person_ids": "distinct_id IN %(ids)s OR person_id IN %(ids)s",
    }
    counts = {table: client.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}".format(
        db=db, events=where["events"]), {"ids": ids})[0][0] for table, cond in where.items()}
    for table in ("person_ids", "failed_events", "sessions", "events"):  # events last: failed_events reads it
        condition = where[table].format(db=db, events=where["events"])
        client.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {condition}", {"ids": ids}, settings=WAIT)
    return ErasureReport(ids, counts["events"], counts["sessions"], counts["failed_events"], counts["person_ids"],
                         identity)
