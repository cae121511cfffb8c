"""The sessionize step: a stateful stream processor keyed by (project, visitor).

Each event gets a session ``{"id", "seq"}``, and session changes become rows of the ``sessions``
table; the rules are in :mod:`processors.sessions`, the state and what a poll writes in
:class:`processors.session_book.SessionBook`. This module makes that state durable.

**State and delivery: exactly once within Kafka** (:mod:`headwater.stateful`). Each visitor's state
lives in memory and in the compacted changelog ``headwater.sessionize-state``, in the partition of
the same number as the input partition. Every poll is handled in one Kafka transaction: the events for
the next step, the session rows, the changelog updates and the input offsets are committed together,
or not at all, so after a crash a session is neither split nor counted twice.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from headwater.partitioning import PartitionMap
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.stateful import TransactionalLoop, transactional_clients
from headwater.topics import processor_group, step_topic
from processors.session_book import NAME, SessionBook, options_in


class Sessionizer(TransactionalLoop):
    """The sessionize step: a :class:`SessionBook` in a transactional loop."""

    name = NAME

    @classmethod
    def role(cls, settings: Settings, check: Callable[[list], None]) -> Sessionizer:
        """The sessionizer with its project store, partition counts and Kafka clients; ``check`` is given
        the stored projects and raises on any problem of the configuration."""
        store, counts = ProjectStore(settings), PartitionMap()
        book = SessionBook(settings, options_in(settings, store), counts)
        instance = settings.instance_id or socket.gethostname()
        clients = transactional_clients(settings, processor_group(NAME), f"headwater-{NAME}-{instance}")
        return cls(settings, book, clients, store,
                   inputs=(step_topic(settings, NAME),), group_id=processor_group(NAME),
                   check=lambda: check(list(store.projects.values())),
                   fault_hold_s=settings.sessionize_fault_hold_s)

