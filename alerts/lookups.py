"""What the alerts role looks up as it goes (:class:`alerts.state.Lookups`): each id's person, tailed from
the identity role's changelog, and the members of the cohorts its visitor rules name, read from
ClickHouse.

**Persons** (:class:`PersonMap`): ``headwater.identity`` holds a record per merged id (committed
records only). The map is as fresh as the identity role: an event read before the role merged its id
counts as the id's person before the merge.

**Cohorts** (:class:`CohortMembers`): every ``alerts_cohort_refresh_s`` the role asks ClickHouse for the
ids of each named cohort's members (:meth:`analytics.cohorts.Cohort.ids_sql`, as the queries compute
it), one query at a time, each bounded in rows (``alerts_max_cohort_members``) and time
(``alerts_cohort_timeout_s``). A cohort is as fresh as its latest refresh and the indexer. Until its
first load its rules raise nothing; a refresh that cannot load it (past the bounds, ClickHouse away)
keeps the members it had, and logs why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from clickhouse_cityhash.cityhash import CityHash64
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from analytics.cohorts import Cohort, find
from headwater.alerts import Alerts
from headwater.clickhouse import make_client
from headwater.identity import Link
from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.tailing import TopicTail
from headwater.topics import identity_topic

log = structlog.get_logger()

Members = frozenset[int]  # cityHash64 of each id, as ClickHouse's events.visitor_hash
Wanted = list[tuple[str, str, Cohort | str]]  # (project, cohort name, its definition or why there is none)


class PersonMap:
    """Each merged id's person, from the identity role's changelog (a resource: loaded before the role
    reads its first event)."""

    def __init__(self, settings: Settings) -> None:
        self.person: dict[str, str] = {}  # "project:id" → person
        self.tail = TopicTail(settings, identity_topic(settings), self.apply, isolation_level="read_committed")

    def apply(self, key: str, value: bytes | None) -> None:
        if value is None:
            self.person.pop(key, None)  # erased
            return
        try:
            self.person[key] = Link.load(value).person
        except ValueError:
            log.error("alerts_identity_record_unreadable", key=key[:200])

    def person_of(self, project_id: str, distinct_id: str) -> str:
        return self.person.get(f"{project_id}:{distinct_id}", distinct_id)

    async def start(self) -> None:
        await self.tail.start(timeout_s=300.0)
        log.info("alerts_persons_loaded", merged_ids=len(self.person))

    async def stop(self) -> None:
        await self.tail.stop()


class CohortMembers:
    """The members of the cohorts that projects' visitor rules name, refreshed in the background (a
    resource). ``rules`` gives a project's rules; the project store, its cohorts' definitions."""

    def __init__(self, settings: Settings, store: ProjectStore, rules: Callable[[str], Alerts | None]) -> None:
        self.settings = settings
        self.store = store
        self.rules = rules
        self.members: dict[tuple[str, str], Members] = {}  # replaced whole by each refresh
        self._task: asyncio.Task | None = None

    def wanted(self) -> Wanted:
        """Every cohort a project's rules name now."""
        wanted: Wanted = []
        for project_id, project in list(self.store.projects.items()):
            alerts = self.rules(project_id)
            for name in sorted(alerts.cohorts if alerts else ()):
                try:
                    wanted.append((project_id, name, find(project_id, project.cohorts, name)))
                except ValueError as exc:  # the project's cohorts changed since its rules were checked
                    wanted.append((project_id, name, str(exc)))
        return wanted

    def refresh(self, wanted: Wanted) -> dict[tuple[str, str], Members]:
        """The members of each wanted cohort (blocking: run in a thread): loaded now, or as before."""
        client = make_client(self.settings, max_result_rows=self.settings.alerts_max_cohort_members,
                             result_overflow_mode="throw", max_execution_time=self.settings.alerts_cohort_timeout_s)
        loaded = {}
        try:
            for project_id, name, cohort in wanted:
                members = self._load(client, project_id, name, cohort)
                if members is None:
                    members = self.members.get((project_id, name))
                if members is not None:
                    loaded[(project_id, name)] = members
        finally:
            client.disconnect()
        return loaded

    def _load(self, client: Client, project_id: str, name: str, cohort: Cohort | str) -> Members | None:
        """The cohort's members, or ``None`` (logged) when they cannot be loaded."""
        started = time.perf_counter()
        try:
            if isinstance(cohort, str):
                raise ValueError(cohort)
            rows = client.execute(f"SELECT who FROM ({cohort.ids_sql(count_ids=False)})", cohort.params())
        except (ValueError, ClickHouseError) as exc:  # no such cohort, too many members, too slow
            log.error("alerts_cohort_not_loaded", project=project_id, cohort=name, error=str(exc)[:300])
            return None
        log.info("alerts_cohort_loaded", project=project_id, cohort=name, ids=len(rows),
                 ms=round((time.perf_counter() - started) * 1000, 1))
        return frozenset(row[0] for row in rows)

    def in_cohort(self, project_id: str, cohort: str, distinct_id: str) -> bool:
        members = self.members.get((project_id, cohort))
        return members is not None and CityHash64(distinct_id) in members

    async def _run(self) -> None:
        while True:
            try:
                self.members = await asyncio.to_thread(self.refresh, self.wanted())
            except (OSError, ClickHouseError, EOFError) as exc:  # ClickHouse away: the members stay
                log.warning("alerts_cohorts_refresh_failed", error=str(exc)[:300])
            await asyncio.sleep(max(self.settings.alerts_cohort_refresh_s, 1.0))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()


class RoleLookups:
    """The role's :class:`alerts.state.Lookups`: persons from the map, cohorts from their members."""

    def __init__(self, persons: PersonMap, cohorts: CohortMembers) -> None:
        self.persons = persons
        self.cohorts = cohorts

    def person_of(self, project_id: str, distinct_id: str) -> str:
        return self.persons.person_of(project_id, distinct_id)

    def in_cohort(self, project_id: str, cohort: str, distinct_id: str) -> bool:
        return self.cohorts.in_cohort(project_id, cohort, distinct_id)
