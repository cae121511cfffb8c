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

from analytics.filters import Filters
from headwater.clickhouse import project_database

PERSON = "if(merged_into = 0, visitor_hash, merged_into)"


def who(filters: Filters) -> str:
    """The expression a query counts and groups visitors by."""
    return "visitor_hash" if filters.count_ids else PERSON


def join(project_id: str, filters: Filters) -> str:
    """The join to each id's person, or nothing when the query counts ids."""
    if filters.count_ids:
        return ""
    return f"""
LEFT ANY JOIN (
    SELECT visitor_hash, argMax(person_hash, version) AS merged_into
    FROM {project_database(project_id)}.person_ids
    GROUP BY visitor_hash
) AS persons USING (visitor_hash)"""
