"""The identity role (``headwater identity``): :class:`identity.book.IdentityBook` in a transactional
loop over the stored events.

**Delivery: exactly once within Kafka** (:mod:`headwater.stateful`): a poll's changed links, its
refusals' dead letters and its input offsets are committed in one transaction, so after a crash no
merge is lost or applied twice. The changelog is loaded into each project's ``person_ids`` table by
the indexer (``headwater indexer person_ids``), idempotently: a row reloaded after a crash carries the
same version and collapses into the first.

**One writer.** The transactional id is ``headwater-identity`` on every replica: a replica that starts
fences the one before it, which stops at its next transaction.
"""

from __future__ import annotations

import structlog

from headwater.flow import INDEX_STEP
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.stateful import TransactionalLoop, transactional_clients
from headwater.topics import IDENTITY_GROUP, identity_commands_topic, step_topic
from identity.book import NAME, IdentityBook
from identity.graph import IdentityOptions, check_identity

log = structlog.get_logger()


class Identifier(TransactionalLoop):
    name = NAME

    @classmethod
    def role(cls, settings: Settings) -> Identifier:
        """The role with its project store and Kafka clients. A project whose ``identity`` settings
        have problems (only possible when written around the admin API) is merged with the defaults,
        and logged."""
        store = ProjectStore(settings)

        def options(project_id: str) -> IdentityOptions:
            project = store.get(project_id)
            return IdentityOptions.of(project.identity if project else {}, settings.identity_max_ids_per_project)

        book = IdentityBook(settings, options, PartitionMap())
        inputs = (step_topic(settings, INDEX_STEP), identity_commands_topic(settings))
        return cls(settings, book, transactional_clients(settings, IDENTITY_GROUP, "headwater-identity"), store,
                   inputs=inputs, group_id=IDENTITY_GROUP,
                   check=lambda: _log_problems(list(store.projects.values())))


def _log_problems(projects: list[Project]) -> None:
    for project in projects:
        problems = check_identity(project.identity)
        if problems:
            log.error("identity_settings_ignored", project=project.id, problems=problems)
