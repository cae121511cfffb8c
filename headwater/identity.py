"""Persons: which distinct ids are one person, as the identity role writes it and the indexer loads it.

A **distinct id** is what an event's visitor is today: its ``anonymous_id``, or its ``user_id`` when it
has none, or a ``user_id`` or ``previous_id`` named by an ``identify`` or ``alias``. A **person** is a set
of distinct ids that ``identify`` and ``alias`` merged. A distinct id that was never merged is a person
of its own, whose id is the distinct id: so only merged ids need a row, and a query counts persons as
``if(merged person, merged person, visitor)`` without rewriting any event.

The compacted topic ``headwater.identity`` (one partition) holds one record per merged distinct id,
keyed ``project:distinct_id``; its value is :class:`Link` as a JSON array. It is the identity role's
changelog and the feed of each project's ``person_ids`` table, a ``ReplacingMergeTree`` on
``version`` ordered by the id's hash: the row with the highest version is the id's person now, and
older rows are the overrides history (as PostHog's ``person_distinct_id_overrides``).
"""

from __future__ import annotations

import dataclasses

import orjson

FORMAT = 1
# PostHog's list (plugin-server person-merge-service): ids SDKs send when they have none
ILLEGAL_ANY_CASE = frozenset({"anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated",
                              "email", "undefined", "true", "false"})
ILLEGAL_EXACT = frozenset({"[object Object]", "NaN", "None", "none", "null", "0"})


def is_illegal(distinct_id: str) -> bool:
    """Whether ``distinct_id`` is blank or a placeholder that must never be merged (also quoted)."""
    bare = distinct_id.strip().strip("'\"").strip()
    return not bare or bare.lower() in ILLEGAL_ANY_CASE or bare in ILLEGAL_EXACT


@dataclasses.dataclass(slots=True)
class Link:
    """One distinct id's person. ``identified``: the id was the ``user_id`` of an ``identify`` or
    ``alias``. ``version`` grows with every change of the project's persons; ``at_ms`` is the time of
    the event that made the change."""

    person: str
    identified: bool
    version: int
    at_ms: int

    def dump(self) -> bytes:
        return orjson.dumps([FORMAT, self.person, self.identified, self.version, self.at_ms])

    @classmethod
    def load(cls, value: bytes) -> Link:
        """The link a changelog value holds; raises ``ValueError`` on anything else."""
        try:
            saved = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not an identity record: {exc}") from exc
        if not isinstance(saved, list) or len(saved) != 5 or saved[0] != FORMAT:
            raise ValueError("not an identity record")
        _, person, identified, version, at_ms = saved
        if not isinstance(person, str) or not isinstance(version, int) or not isinstance(at_ms, int):
            raise ValueError("not an identity record")
        return cls(person, bool(identified), version, at_ms)


def erase_command(project_id: str, distinct_ids: list[str]) -> bytes:
    """The ``headwater.identity-commands`` record asking the identity role to forget the persons of
    these ids, every id of each (``headwater erase``)."""
    return orjson.dumps({"erase": {"project_id": project_id, "ids": distinct_ids}})


def read_erase_command(value: bytes) -> tuple[str, list[str]]:
    """``(project id, ids)`` of an erase command; raises ``ValueError`` on anything else."""
    try:
        erase = orjson.loads(value)["erase"]
        project_id, ids = erase["project_id"], erase["ids"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not an identity command: {exc}") from exc
    if not isinstance(project_id, str) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("not an identity command")
    return project_id, ids


def record_key(project_id: str, distinct_id: str) -> bytes:
    return f"{project_id}:{distinct_id}".encode()


def split_key(key: bytes) -> tuple[str, str]:
    """``(project id, distinct id)`` of a record key; project ids hold no ``:``."""
    project_id, _, distinct_id = key.decode(errors="replace").partition(":")
    return project_id, distinct_id
