"""The identity role's state: every project's :class:`identity.graph.ProjectGraph`, made durable by
:class:`headwater.stateful.TransactionalLoop` in the compacted topic ``headwater.identity``.

A poll reads the stored events (``headwater.step.index``, after the project's privacy policy, so the
ids are the ones in ClickHouse), applies each ``identify`` and ``alias`` in order, and writes the
links that changed to the changelog, or a dead letter for a merge the rules refuse. Records without
either type are skipped on a substring test of their bytes, without decoding them. It also reads
``headwater.identity-commands`` (:mod:`headwater.identity_commands`): an erase command forgets every id
of the persons it names, and writes a tombstone for each; a remerge batch, stored events read back from
ClickHouse, is applied as the stored events are.

The state is one graph per project, not per input partition: a person's ids arrive on any
partition. So the role has one writer: its transactional id is the same for every replica, and a
replica that starts fences the one before it (which stops). After a rebalance or an aborted
transaction the whole changelog is read again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected, dead_letter
from headwater.envelope import decode_batch
from headwater.errors import FatalError
from headwater.identity import Link, read_erase_command, record_key, split_key
from headwater.partitioning import PartitionMap
from headwater.relay_types import Output
from headwater.settings import Settings
from headwater.stateful import Batch, OneWriterState
from headwater.step_counts import StepCounts
from headwater.topics import identity_commands_topic, identity_topic
from identity.graph import IdentityOptions, MergeRefused, ProjectGraph

log = structlog.get_logger()

NAME = "identity"
MARKERS = (b'"identify"', b'"alias"')  # how the processors' encoder writes these event types


class _Ids(msgspec.Struct):
    type: str = ""
    userId: Any = None
    anonymousId: Any = None
    previousId: Any = None


class _Stored(msgspec.Struct):
    """What the role reads of a stored envelope; the rest of it is skipped unparsed."""

    project_id: str
    received_at_ms: int = 0
    event: _Ids = msgspec.field(default_factory=_Ids)


_decode = msgspec.json.Decoder(list[_Stored]).decode


def _text(value: object) -> str:
    return "" if value is None else str(value)


class IdentityBook(OneWriterState):
    """Every project's graph. ``options`` gives a project's :class:`IdentityOptions`."""

    rows_metric = ("headwater_identity_changes", "distinct ids whose person changed")

    def __init__(self, settings: Settings, options: Callable[[str], IdentityOptions], counts: PartitionMap) -> None:
        self.settings = settings
        self.options = options
        self.counts = counts
        self.changelog = identity_topic(settings)
        self.commands = identity_commands_topic(settings)
        self.graphs: dict[str, ProjectGraph] = {}
        self.step_counts = StepCounts(settings)  # the role is not a step of the flow: it counts nothing
        self.merges = 0
        self.refusals = 0
        self.erased = 0

    def clear(self) -> None:
        self.graphs.clear()

    def restore_record(self, number: int, record: ConsumerRecord) -> None:
        project_id, distinct_id = split_key(record.key)
        try:
            link = None if record.value is None else Link.load(record.value)
        except ValueError as exc:
            log.error("identity_record_unreadable", offset=record.offset, error=str(exc))
            return
        self.graphs.setdefault(project_id, ProjectGraph()).restore(distinct_id, link)

    def size(self, numbers: list[int]) -> int:
        return sum(len(graph.links) for graph in self.graphs.values())

    def rows_due(self, now: float) -> bool:
        return False

    def summary(self) -> dict:
        return {"merges": self.merges, "refusals": self.refusals, "erased": self.erased}

    def poll(self, batch: Batch, now: float) -> tuple[list[Output], int]:
        """The changelog records of the links this poll changed (a tombstone for an erased one), and
        the dead letters of the merges it refused; and how many links changed."""
        if not self.loaded:
            raise FatalError("the identity state was dropped and not restored")
        changed: dict[tuple[str, str], Link | None] = {}
        refused: list[Output] = []
        for tp, records in batch.items():
            for record in records:
                if record.value is None:
                    continue
                if tp.topic == self.commands and not record.value.startswith(b"["):
                    self._erase(record, changed)
                elif any(marker in record.value for marker in MARKERS):  # stored events, or a remerge batch
                    self._apply_record(record, changed, refused)
        outputs = [Output(self.changelog, record_key(project_id, distinct_id), None if link is None else link.dump(),
                          [], events=0, partition=0)
                   for (project_id, distinct_id), link in changed.items()]
        return outputs + refused, len(changed)

    def _erase(self, record: ConsumerRecord, changed: dict) -> None:
        try:
            project_id, ids = read_erase_command(record.value)
        except ValueError as exc:
            log.error("identity_command_unreadable", offset=record.offset, error=str(exc))
            return
        graph = self.graphs.get(project_id)
        persons = {graph.person_of(distinct_id) for distinct_id in ids} if graph else set()
        for person in persons:
            assert graph is not None
            for distinct_id in graph.erase(person):
                changed[(project_id, distinct_id)] = None
                self.erased += 1

    def _apply_record(self, record: ConsumerRecord, changed: dict, refused: list[Output]) -> None:
        try:
            stored = _decode(record.value)
        except msgspec.DecodeError:
            return  # the events indexer dead-letters what it cannot read
        for index, envelope in enumerate(stored):
            if envelope.event.type not in ("identify", "alias"):
                continue
            try:
                links = self._apply(envelope)
            except MergeRefused as exc:
                self.refusals += 1
                refused.append(self._dead_letter(record, index, exc))
                continue
            self.merges += bool(links)
            changed.update(((envelope.project_id, distinct_id), link) for distinct_id, link in links.items())

    def _apply(self, stored: _Stored) -> dict[str, Link]:
        ids, user_id = stored.event, _text(stored.event.userId)
        other_id = _text(ids.anonymousId if ids.type == "identify" else ids.previousId)
        if not user_id:  # an anonymous identify only sets traits; an alias without a user id merges nothing
            return {}
        graph = self.graphs.setdefault(stored.project_id, ProjectGraph())
        if not other_id:
            return graph.identify(user_id, stored.received_at_ms, self.options(stored.project_id))
        return graph.merge(user_id, other_id, stored.received_at_ms, self.options(stored.project_id),
                           explicit=ids.type == "alias")

    def _dead_letter(self, record: ConsumerRecord, index: int, refusal: MergeRefused) -> Output:
        envelope = decode_batch(record.value)[index]
        path = "previousId" if envelope.event.get("type") == "alias" else "anonymousId"
        return dead_letter(self.settings, record, Rejected(f"merge_{refusal.kind}", str(refusal), path), NAME,
                           envelope)
