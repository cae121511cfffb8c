"""The merge rules: one project's distinct ids and the persons they make (PostHog's rules).

- ``identify`` with a ``user_id`` and an ``anonymous_id``, and ``alias`` (``previous_id`` → ``user_id``),
  merge the other id into the user id's person:
  - neither id has a person: a new person with both, named after the user id;
  - one has a person: the other id joins it; but an ``identify`` whose anonymous id belongs to a person
    already identified as another user is refused (a shared device's anonymous id does not merge two
    users), while an ``alias`` (``explicit``) says the user id is the same user and joins;
  - both have different persons: every id of the other person moves to the user id's person, unless
    the other person is already identified (refused, unless the project sets ``merge_identified``).
- ``identify`` with only a ``user_id`` marks that id identified.
- A merge naming an illegal id (:func:`headwater.identity.is_illegal`), or that would give a person
  more than ``max_ids`` ids, is refused. A refusal changes nothing.
"""

from __future__ import annotations

import dataclasses

from headwater.identity import Link, is_illegal

ILLEGAL_ID = "illegal_id"
ALREADY_IDENTIFIED = "already_identified"
TOO_MANY_IDS = "too_many_ids"


class MergeRefused(Exception):
    """A merge the rules refuse: ``kind`` is one of the constants above, the message says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class IdentityOptions:
    """A project's ``identity`` settings."""

    merge_identified: bool = False  # merge a person that has an identified id into another
    max_ids: int = 100  # the most distinct ids one person may have
    max_project_ids: int = 1_000_000  # the most the project may have (settings.identity_max_ids_per_project)

    @classmethod
    def of(cls, raw: object, max_project_ids: int = 1_000_000) -> IdentityOptions:
        """The options ``raw`` sets; the defaults when it has problems (the admin API refuses those)."""
        if check_identity(raw):
            return cls(max_project_ids=max_project_ids)
        assert isinstance(raw, dict)
        return cls(raw.get("merge_identified", False), raw.get("max_ids", 100), max_project_ids)


def check_identity(raw: object) -> list[str]:
    """The problems of a project's ``identity`` settings."""
    if not isinstance(raw, dict):
        return ["identity must be an object"]
    errors = [f"identity.{name} is not a setting (merge_identified, max_ids)"
              for name in raw if name not in ("merge_identified", "max_ids")]
    if not isinstance(raw.get("merge_identified", False), bool):
        errors.append("identity.merge_identified must be true or false")
    max_ids = raw.get("max_ids", 100)
    if not isinstance(max_ids, int) or isinstance(max_ids, bool) or not 2 <= max_ids <= 10_000:
        errors.append("identity.max_ids must be a whole number from 2 to 10000")
    return errors


class ProjectGraph:
    """One project's merged ids: ``links`` by distinct id, ``members`` by person."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.members: dict[str, set[str]] = {}
        self.version = 0

    def restore(self, distinct_id: str, link: Link | None) -> None:
        """Apply one changelog record (``None``: the id was erased)."""
        old = self.links.pop(distinct_id, None)
        if old is not None:
            self._leave(old.person, distinct_id)
        if link is not None:
            self.links[distinct_id] = link
            self.members.setdefault(link.person, set()).add(distinct_id)
            self.version = max(self.version, link.version)

    def identify(self, user_id: str, at_ms: int, options: IdentityOptions) -> dict[str, Link]:
        """Mark ``user_id`` identified; the links that changed."""
        if is_illegal(user_id):
            raise MergeRefused(ILLEGAL_ID, f"cannot identify the illegal id {user_id!r}")
        link = self.links.get(user_id)
        if link is not None and link.identified:
            return {}
        if link is None:
            self._check_project_size(1, options)
        return self._set({user_id: link.person if link else user_id}, at_ms, identified={user_id})

    def merge(self, user_id: str, other_id: str, at_ms: int, options: IdentityOptions,
              explicit: bool = False) -> dict[str, Link]:
        """Merge ``other_id`` into ``user_id``'s person (see the module); the links that changed.
        ``explicit``: an ``alias``, not an ``identify``. Raises :class:`MergeRefused`."""
        for distinct_id in (user_id, other_id):
            if is_illegal(distinct_id):
                raise MergeRefused(ILLEGAL_ID, f"cannot merge with the illegal id {distinct_id!r}")
        if user_id == other_id:
            return self.identify(user_id, at_ms, options)
        mine, theirs = self.links.get(user_id), self.links.get(other_id)
        self._check_project_size((mine is None) + (theirs is None), options)
        if mine is None and theirs is None:
            return self._set({user_id: user_id, other_id: user_id}, at_ms, identified={user_id})
        if mine is None:
            assert theirs is not None
            if not explicit:
                self._check_other_user(theirs.person, other_id, user_id, options)
            self._check_size(theirs.person, 1, options)
            return self._set({user_id: theirs.person}, at_ms, identified={user_id})
        if theirs is None:
            self._check_size(mine.person, 1, options)
            return self._set({other_id: mine.person, **self._unidentified(user_id)}, at_ms, identified={user_id})
        if mine.person == theirs.person:
            return self.identify(user_id, at_ms, options)
        self._check_other_user(theirs.person, other_id, user_id, options)
        moving = self.members.get(theirs.person, set())
        self._check_size(mine.person, len(moving), options)
        return self._set({**dict.fromkeys(moving, mine.person), **self._unidentified(user_id)}, at_ms,
                         identified={user_id})

    def is_identified(self, person: str) -> bool:
        return any(self.links[m].identified for m in self.members.get(person, ()))

    def person_of(self, distinct_id: str) -> str:
        link = self.links.get(distinct_id)
        return link.person if link else distinct_id

    def erase(self, person: str) -> list[str]:
        """Forget every id of ``person``; the ids forgotten."""
        ids = sorted(self.members.pop(person, ()))
        for distinct_id in ids:
            del self.links[distinct_id]
        return ids

    def _check_other_user(self, person: str, other_id: str, user_id: str, options: IdentityOptions) -> None:
        if self.is_identified(person) and not options.merge_identified:
            raise MergeRefused(ALREADY_IDENTIFIED, f"{other_id!r} belongs to the identified person {person!r}; "
                               f"set identity.merge_identified to merge it into {user_id!r}")

    def _unidentified(self, distinct_id: str) -> dict[str, str]:
        """``{distinct_id: its person}`` when it has a link not marked identified yet."""
        link = self.links.get(distinct_id)
        return {distinct_id: link.person} if link is not None and not link.identified else {}

    def _check_project_size(self, joining: int, options: IdentityOptions) -> None:
        if joining and len(self.links) + joining > options.max_project_ids:
            raise MergeRefused(TOO_MANY_IDS, f"the project has {len(self.links)} merged ids, the most "
                               f"settings.identity_max_ids_per_project allows ({options.max_project_ids})")

    def _check_size(self, person: str, joining: int, options: IdentityOptions) -> None:
        size = len(self.members.get(person, ())) or 1
        if size + joining > options.max_ids:
            raise MergeRefused(TOO_MANY_IDS, f"person {person!r} has {size} ids; {joining} more would pass "
                               f"identity.max_ids ({options.max_ids})")

    def _set(self, persons: dict[str, str], at_ms: int, identified: set[str]) -> dict[str, Link]:
        self.version += 1
        changed = {}
        for distinct_id, person in persons.items():
            old = self.links.get(distinct_id)
            link = Link(person, distinct_id in identified or (old is not None and old.identified), self.version,
                        at_ms)
            self.restore(distinct_id, link)
            changed[distinct_id] = link
        return changed

    def _leave(self, person: str, distinct_id: str) -> None:
        members = self.members.get(person)
        if members is not None:
            members.discard(distinct_id)
            if not members:
                del self.members[person]
