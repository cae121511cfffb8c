"""Counting persons instead of ids: what every query joins when it counts visitors.

A person is the set of distinct ids that ``identify`` and ``alias`` merged (:mod:`headwater.identity`).
Each project's ``person_ids`` holds a row per merged id; an id without one is a person of its own. So a
query counts persons by joining each event's ``visitor_hash`` to the id's current person::

    LEFT ANY JOIN (
        SELECT visitor_hash, argMax(person_hash, version) AS merged_into
        FROM <db>.person_ids GROUP BY visitor_hash
    ) AS persons USING (visitor_hash)

and counting ``if(merged_into = 0, visitor_hash, merged_into)`` (an unmatched row joins 0). With
``count_ids`` set (``count=ids`` in a dashboard URL, ``--count ids`` on the command line) queries count
ids, as before identity existed; the SQL shown says which it does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from headwater.clickhouse import project_database

if TYPE_CHECKING:  # filters import cohorts, which import this module
    from analytics.filters import Filters

PERSON = "if(merged_into = 0, visitor_hash, merged_into)"


def person_map(project_id: str, column: str = "person_hash", name: str = "merged_into") -> str:
    """The subquery giving each merged id (``visitor_hash``) its person now: ``argMax(column, version)``
    as ``name`` (the person's hash, or with ``person_id`` its id)."""
    return f"""(
    SELECT visitor_hash, argMax({column}, version) AS {name}
    FROM {project_database(project_id)}.person_ids
    GROUP BY visitor_hash
)"""


def who_of(count_ids: bool) -> str:
    """The expression a query counts and groups visitors by."""
    return "visitor_hash" if count_ids else PERSON


def join_of(project_id: str, count_ids: bool) -> str:
    """The join to each id's person, or nothing when the query counts ids."""
    return "" if count_ids else f"\nLEFT ANY JOIN {person_map(project_id)} AS persons USING (visitor_hash)"


def who(filters: Filters) -> str:
    return who_of(filters.count_ids)


def join(project_id: str, filters: Filters) -> str:
    return join_of(project_id, filters.count_ids)
