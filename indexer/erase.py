"""``headwater erase --project P --user U``: delete a person's events and sessions (right to erasure).

The person is the id given (a user id or an anonymous id) together with every anonymous id that ever
appeared on an event with that user id. Deletes are ClickHouse mutations on the project's ``events``,
``sessions`` and ``failed_events`` tables, waited for, so when the command returns the rows are gone
from every query. Kafka keeps raw events for the topics' retention (7 days) and the sessionizer's
changelog keeps the visitor's open-session state until it goes idle; both age out by themselves.
"""

from __future__ import annotations

import dataclasses

from clickhouse_driver import Client

from headwater.clickhouse import project_database

WAIT = {"mutations_sync": 2}


@dataclasses.dataclass
class ErasureReport:
    ids: list[str]
    events: int
    sessions: int
    failed_events: int


def person_ids(client: Client, db: str, person: str) -> list[str]:
    linked = client.execute(
        f"SELECT DISTINCT anonymous_id FROM {db}.events WHERE user_id = %(p)s AND anonymous_id != ''", {"p": person})
    return sorted({person, *(row[0] for row in linked)})


def erase(client: Client, project_id: str, person: str) -> ErasureReport:
    db = project_database(project_id)
    ids = person_ids(client, db, person)
    where = {
        "events": "user_id IN %(ids)s OR anonymous_id IN %(ids)s",
        "sessions": "user_id IN %(ids)s OR visitor_id IN %(ids)s",
        "failed_events": "message_id IN (SELECT message_id FROM {db}.events WHERE {events})",
    }
    counts = {table: client.execute(f"SELECT count() FROM {db}.{table} WHERE {cond}".format(
        db=db, events=where["events"]), {"ids": ids})[0][0] for table, cond in where.items()}
    for table in ("failed_events", "sessions", "events"):  # events last: failed_events selects from it
        condition = where[table].format(db=db, events=where["events"])
        client.execute(f"ALTER TABLE {db}.{table} DELETE WHERE {condition}", {"ids": ids}, settings=WAIT)
    return ErasureReport(ids, counts["events"], counts["sessions"], counts["failed_events"])
