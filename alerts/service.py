"""The alerts role (``headwater alerts``): :class:`alerts.book.AlertBook` in a transactional loop over
the stored events.

**Exactly once within Kafka** (:mod:`headwater.stateful`): a poll's alerts, its state changes and its
input offsets are committed in one transaction. After a crash, even a ``kill -9`` in the middle of a
window, the state is restored from the committed changelog and the same events are read again: a
window's count is neither short nor counted twice, and an alert is neither lost nor written twice to
``headwater.alerts``. Channels deliver alerts at least once, each with its id (``messageId``), which
stays the same if the role works the alert out again (:func:`headwater.alerts.alert_id`).

**Persons and cohorts** are looked up (:mod:`alerts.lookups`), not kept: a replay after a crash
counts an id as the person it belongs to when it is read again.

**One writer.** The transactional id is ``headwater-alerts`` on every replica: a replica that starts
fences the one before it, which stops at its next transaction.
"""

from __future__ import annotations

import structlog

from alerts.book import NAME, AlertBook
from alerts.lookups import CohortMembers, PersonMap, RoleLookups
from headwater.alerts import Alerts, AlertsError, parse_alerts
from headwater.flow import INDEX_STEP
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.stateful import TransactionalLoop, transactional_clients
from headwater.topics import ALERTS_GROUP, step_topic

log = structlog.get_logger()


class RulesOf:
    """Each project's parsed rules, parsed again only when the project's definition changes. A project
    whose ``alerts`` setting has problems (only possible when written around the admin API) raises
    nothing, and is logged once."""

    def __init__(self, store: ProjectStore) -> None:
        self.store = store
        self.parsed: dict[str, tuple[Project, Alerts | None]] = {}

    def __call__(self, project_id: str) -> Alerts | None:
        project = self.store.get(project_id)
        if project is None:
            return None
        cached = self.parsed.get(project_id)
        if cached is not None and cached[0] is project:
            return cached[1]
        try:
            alerts: Alerts | None = parse_alerts(project.alerts)
        except AlertsError as exc:
            log.error("alert_rules_ignored", project=project_id, problems=exc.problems)
            alerts = None
        if alerts is not None and not alerts.rules:
            alerts = None
        self.parsed[project_id] = (project, alerts)
        return alerts


class Alerter(TransactionalLoop):
    name = NAME

    @classmethod
    def role(cls, settings: Settings) -> Alerter:
        store = ProjectStore(settings)
        rules = RulesOf(store)
        persons, cohorts = PersonMap(settings), CohortMembers(settings, store, rules)
        book = AlertBook(settings, rules, PartitionMap(), RoleLookups(persons, cohorts))
        return cls(settings, book, transactional_clients(settings, ALERTS_GROUP, "headwater-alerts"), store,
                   persons, cohorts, inputs=(step_topic(settings, INDEX_STEP),), group_id=ALERTS_GROUP,
                   fault_hold_s=settings.alerts_fault_hold_s)
