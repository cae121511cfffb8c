"""Persons one by one: the list of persons (searched by id or trait), and one person's ids, profile,
traits, sessions and events across all of its devices. Each returns a :class:`~analytics.queries.Query`
except :func:`fold_traits`, which turns a person's ``identify`` calls into its traits, and
:func:`export_person`, everything stored about one person (``headwater export --person``).

A person is read the way :mod:`analytics.persons` counts it: a merged id's person from ``person_ids``,
or the id itself. A profile reads every event of the person's ids, whatever their time.

Traits: each ``identify``'s ``traits`` set their keys (the latest call wins); keys under
``traits.$set_once`` are set only when the person has none yet; names listed in ``traits.$unset`` are
removed (PostHog's ``$set``, ``$set_once`` and ``$unset``).
"""

from __future__ import annotations

from datetime import date, datetime

import orjson
from clickhouse_driver import Client

from analytics.filters import NONE, Filters
from analytics.persons import person_map
from analytics.queries import FINAL_SETTINGS, SINCE, UNTIL, VISITOR, Query, QueryError, _events, time_range
from headwater.clickhouse import project_database

MAX_IDS = 10_000  # identity.max_ids' ceiling
PEOPLE_COLUMNS = ("person", "ids", "events", "sessions", "first_seen", "last_seen", "latest_traits")
PROFILE_COLUMNS = ("events", "sessions", "first_seen", "last_seen", "first_referrer", "first_campaign", "devices")
TIMELINE_COLUMNS = ("timestamp", "type", "event", "url_path", "visitor", "session_id", "device", "browser", "message_id")


def _merged(project_id: str) -> str:
    return f"{person_map(project_id, 'person_id', 'merged_person')} AS persons"


def people(project_id: str, since: datetime, until: datetime, search: str = "", limit: int = 100,
           filters: Filters = NONE) -> Query:
    """The persons seen in the range, the latest first: their ids seen there, events, sessions, first and
    last time seen there, and the traits of their latest ``identify`` in the range. ``search`` keeps the
    persons with that id (one of theirs, or the person's own) or with the text in the traits of any of
    their ``identify`` calls in the range. With ``filters.count_ids`` each id is a row of its own."""
    if len(search) > 200:
        raise QueryError("a search is at most 200 characters")
    if not 1 <= limit <= 1000:
        raise QueryError("limit must be between 1 and 1000")
    having = ("\nHAVING person = %(search)s OR has(id_list, %(search)s)"
              " OR arrayExists(t -> positionCaseInsensitive(t, %(search)s) > 0, all_traits)" if search else "")
    person = "visitor" if filters.count_ids else "if(merged_person = '', visitor, merged_person)"
    join = "" if filters.count_ids else f"\nLEFT ANY JOIN {_merged(project_id)} USING (visitor_hash)"
    sql = f"""SELECT
    {person} AS person,
    groupUniqArray(visitor) AS id_list,
    length(id_list) AS ids,
    count() AS events,
    uniqExact(session_id) AS sessions,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen,
    argMaxIf(traits, timestamp, type = 'identify' AND traits NOT IN ('', '{{}}')) AS latest_traits,
    groupUniqArrayIf(traits, type = 'identify') AS all_traits
FROM (
    SELECT {VISITOR} AS visitor, visitor_hash, session_id, timestamp, type, traits
    FROM {_events(project_id)}
    WHERE timestamp >= {SINCE} AND timestamp < {UNTIL}{filters.events_condition()}
) AS seen{join}
GROUP BY person{having}
ORDER BY last_seen DESC, person
LIMIT %(limit)s{FINAL_SETTINGS}"""
    params = {**time_range(since, until), "search": search, "limit": limit, **filters.params()}
    return Query(sql, params, ("person", "id_list", *PEOPLE_COLUMNS[1:], "all_traits"))


def person_of(project_id: str, distinct_id: str) -> Query:
    """The person ``distinct_id`` belongs to now (no row: it is a person of its own)."""
    _check_id(distinct_id)
    sql = f"""SELECT argMax(person_id, version) AS person
FROM {project_database(project_id)}.person_ids
WHERE distinct_id = %(id)s"""
    return Query(sql, {"id": distinct_id}, ("person",))


def person_ids(project_id: str, person: str) -> Query:
    """Every id merged into ``person`` now, with whether it was identified (the person's own id too,
    when it has a row)."""
    _check_id(person)
    sql = f"""SELECT distinct_id, argMax(is_identified, version) AS is_identified, argMax(merged_at, version) AS merged_at
FROM {project_database(project_id)}.person_ids
GROUP BY distinct_id
HAVING argMax(person_id, version) = %(person)s
ORDER BY merged_at, distinct_id"""
    return Query(sql, {"person": person}, ("distinct_id", "is_identified", "merged_at"))


def _ids_condition(ids: list[str]) -> str:
    if not ids or len(ids) > MAX_IDS:
        raise QueryError(f"a person has 1 to {MAX_IDS} ids")
    return "visitor_hash IN (SELECT cityHash64(arrayJoin(%(ids)s)))"


def profile(project_id: str, ids: list[str]) -> Query:
    """What the events of these ids say about their person: events, sessions, first and last seen, the
    first referrer and campaign, and every (device, browser, os) used."""
    sql = f"""SELECT
    count() AS events,
    uniqExact(session_id) AS sessions,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen,
    argMinIf(referrer_source, timestamp, referrer_source != '' AND referrer_medium != 'internal') AS first_referrer,
    argMinIf(utm_campaign, timestamp, utm_campaign != '') AS first_campaign,
    arraySort(groupUniqArrayIf((device, browser, os), device != '' OR browser != '')) AS devices
FROM {_events(project_id)}
WHERE {_ids_condition(ids)}{FINAL_SETTINGS}"""
    return Query(sql, {"ids": ids}, PROFILE_COLUMNS)


def identifies(project_id: str, ids: list[str]) -> Query:
    """The traits of every ``identify`` of these ids, oldest first (for :func:`fold_traits`)."""
    sql = f"""SELECT traits
FROM {_events(project_id)}
WHERE type = 'identify' AND {_ids_condition(ids)}
ORDER BY timestamp, message_id{FINAL_SETTINGS}"""
    return Query(sql, {"ids": ids}, ("traits",))


def timeline(project_id: str, ids: list[str], limit: int = 200) -> Query:
    """The latest events of these ids, newest first, from every device."""
    if not 1 <= limit <= 1000:
        raise QueryError("limit must be between 1 and 1000")
    sql = f"""SELECT timestamp, type, event, url_path, {VISITOR} AS visitor, session_id, device, browser, message_id
FROM {_events(project_id)}
WHERE {_ids_condition(ids)}
ORDER BY timestamp DESC, message_id
LIMIT %(limit)s{FINAL_SETTINGS}"""
    return Query(sql, {"ids": ids, "limit": limit}, TIMELINE_COLUMNS)


def sessions(project_id: str, ids: list[str], limit: int = 100) -> Query:
    """The latest sessions of these ids, newest first."""
    sql = f"""SELECT session_id, visitor_id, start_at, end_at, duration_s, pageviews, events, entry_page,
    referrer_source, utm_campaign, device, browser
FROM {project_database(project_id)}.sessions FINAL
WHERE sign = 1 AND {_ids_condition(ids)}
ORDER BY start_at DESC, session_id
LIMIT %(limit)s"""
    return Query(sql, {"ids": ids, "limit": limit},
                 ("session_id", "visitor_id", "start_at", "end_at", "duration_s", "pageviews", "events", "entry_page",
                  "referrer_source", "utm_campaign", "device", "browser"))


def fold_traits(calls: list[str]) -> dict:
    """A person's traits from the JSON ``traits`` of its ``identify`` calls, oldest first (see the module)."""
    traits: dict = {}
    for text in calls:
        try:
            call = orjson.loads(text or "{}")
        except orjson.JSONDecodeError:
            continue
        if not isinstance(call, dict):
            continue
        once, unset = call.pop("$set_once", {}), call.pop("$unset", [])
        traits.update(call)
        if isinstance(once, dict):
            for name, value in once.items():
                traits.setdefault(name, value)
        for name in unset if isinstance(unset, list) else []:
            if isinstance(name, str):
                traits.pop(name, None)
    return traits


def _check_id(distinct_id: str) -> None:
    if not distinct_id or len(distinct_id) > 1000:
        raise QueryError("an id is 1 to 1000 characters")


def ids_of(client: Client, project_id: str, given: str) -> tuple[str, list[str]]:
    """The person ``given`` belongs to, and every id of it (the person's own first)."""
    found = client.execute(person_of(project_id, given).sql, {"id": given})
    person = (found[0][0] if found else "") or given
    merged = [row[0] for row in client.execute(person_ids(project_id, person).sql, {"person": person})]
    return person, list(dict.fromkeys([person, *merged]))


def export_person(client: Client, project_id: str, given: str) -> dict:
    """Everything stored about the person of ``given`` (a right-of-access request): its ids and their
    merges, its traits, and every row of ``events``, ``sessions`` and ``failed_events`` of its ids, each
    with every column. Raw events in Kafka (7 days) are not read."""
    person, ids = ids_of(client, project_id, given)
    db = project_database(project_id)
    merges = _rows(client, f"SELECT * FROM {db}.person_ids WHERE distinct_id IN %(ids)s ORDER BY version", ids)
    where = _ids_condition(ids)
    events = _rows(client, f"SELECT * FROM {db}.events FINAL WHERE {where} ORDER BY timestamp, message_id", ids)
    sessions = _rows(client, f"SELECT * FROM {db}.sessions FINAL WHERE sign = 1 AND {where} ORDER BY start_at", ids)
    # dead letters of the person's stored events (a refused merge's identify is one); an event refused
    # before it was stored is not linked to an id here (its payload may have been withheld)
    failed = _rows(client, f"SELECT * FROM {db}.failed_events WHERE message_id IN (SELECT message_id FROM "
                           f"{db}.events WHERE {where}) ORDER BY failed_at", ids)
    identify_traits = [row["traits"] for row in events if row.get("type") == "identify"]
    return {"project": project_id, "person": person, "ids": ids, "merges": merges,
            "traits": fold_traits(identify_traits), "events": events, "sessions": sessions, "failed_events": failed}


def _rows(client: Client, sql: str, ids: list[str]) -> list[dict]:
    result, columns = client.execute(sql, {"ids": ids}, with_column_types=True)
    names = [name for name, _ in columns]
    return [{name: _plain(value) for name, value in zip(names, row)} for row in result]


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
