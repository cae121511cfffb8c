"""Changing containers (the admin API, the CLI through it, and the dashboard): save a draft, publish it
as a new version, roll back to any version, export and import, delete, and issue preview tokens.

Every write goes to ``headwater.tags`` (:mod:`headwater.tags.store`), acknowledged by every in-sync
replica, and returns once this process's store has read it back. Only admins reach these calls: a
container may hold ``html`` tags, code that runs on the project's pages.
"""

from __future__ import annotations

import time

import orjson

from headwater.projects.admin import ProjectError, ProjectNotFound
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings
from headwater.tags import preview
from headwater.tags.model import DefinitionError, custom_code, parse_definition
from headwater.tags.store import CONTAINER_ID, ContainerStore, head_key, version_key
from headwater.topics import tags_topic

MAX_CONTAINERS = 20
MAX_VERSIONS = 200  # every process that serves or changes containers keeps them all in memory
MAX_NOTE = 500


class ContainerNotFound(ProjectError):
    status = 404


class DraftChanged(ProjectError):
    status = 409


def now_ms() -> int:
    return int(time.time() * 1000)


def summary(container: str, head: dict) -> dict:
    """A container as lists show it."""
    return {"id": container, "name": head["name"], "published": head["published"], "draft_rev": head["draft_rev"],
            "versions": len(head["versions"]), "updated_at_ms": head["updated_at_ms"],
            "custom_code": head.get("custom_code", [])}


class ContainerAdmin:
    def __init__(self, settings: Settings, projects: ProjectStore, store: ContainerStore,
                 writer: ProjectWriter) -> None:
        self.settings = settings
        self.projects = projects
        self.store = store
        self.writer = writer

    def summaries(self, project_id: str) -> list[dict]:
        self._project(project_id)
        return [summary(c, head) for c, head in self.store.containers(project_id)]

    def get(self, project_id: str, container: str) -> dict:
        """The head: name, draft, ``draft_rev``, ``published`` and the versions' notes."""
        self._project(project_id)
        head = self.store.head(project_id, container)
        if head is None:
            raise ContainerNotFound(f"project {project_id!r} has no container {container!r}")
        return {"id": container, **head}

    def version(self, project_id: str, container: str, version: int) -> dict:
        self.get(project_id, container)
        record = self.store.version(project_id, container, version)
        if record is None:
            raise ContainerNotFound(f"container {container!r} has no version {version}")
        return record

    async def save(self, project_id: str, container: str, name: str, definition: object, rev: int | None = None,
                   by: str = "admin") -> dict:
        """Save the draft (creating the container); with ``rev``, only if the draft is still that one."""
        self._project(project_id)
        if not CONTAINER_ID.fullmatch(container):
            raise ProjectError(f"a container id matches {CONTAINER_ID.pattern}")
        try:
            checked = parse_definition(definition)
        except DefinitionError as exc:
            raise ProjectError("; ".join(exc.problems)) from exc
        head = self.store.head(project_id, container)
        if head is None and len(self.store.containers(project_id)) >= MAX_CONTAINERS:
            raise ProjectError(f"a project has at most {MAX_CONTAINERS} containers")
        if head is not None and rev is not None and head["draft_rev"] != rev:
            raise DraftChanged(f"the draft changed since rev {rev} (it is rev {head['draft_rev']}): "
                               "read it again, then save")
        head = head or {"published": None, "versions": [], "draft_rev": 0}
        head = {**head, "name": (name or head.get("name") or container)[:200], "draft": definition,
                "draft_rev": head["draft_rev"] + 1, "updated_at_ms": now_ms(), "updated_by": by,
                "custom_code": custom_code(checked)}
        await self._write(head_key(project_id, container), head)
        return {"id": container, **head}

    async def publish(self, project_id: str, container: str, note: str = "", by: str = "admin") -> dict:
        """Make the draft a new version, and serve it."""
        head = self.get(project_id, container)
        if len(head["versions"]) >= MAX_VERSIONS:
            raise ProjectError(f"a container keeps at most {MAX_VERSIONS} versions")
        parse_definition(head["draft"])
        number = max((v["version"] for v in head["versions"]), default=0) + 1
        at = now_ms()
        meta = {"version": number, "note": note[:MAX_NOTE], "at_ms": at, "by": by}
        await self._write(version_key(project_id, container, number), {**meta, "definition": head["draft"]})
        return await self._serve(project_id, container, head, number, by, versions=[*head["versions"], meta])

    async def rollback(self, project_id: str, container: str, version: int, by: str = "admin") -> dict:
        """Serve an earlier (or later) version again, as it was published."""
        head = self.get(project_id, container)
        self.version(project_id, container, version)
        return await self._serve(project_id, container, head, version, by, versions=head["versions"])

    async def delete(self, project_id: str, container: str) -> None:
        head = self.get(project_id, container)
        for meta in head["versions"]:
            await self._write(version_key(project_id, container, meta["version"]), None)
        await self._write(head_key(project_id, container), None)

    def preview_token(self, project_id: str, container: str) -> str:
        self.get(project_id, container)
        try:
            return preview.issue(self.settings, project_id, container)
        except ValueError as exc:
            raise ProjectError(str(exc)) from exc

    async def _serve(self, project_id: str, container: str, head: dict, version: int, by: str,
                     versions: list[dict]) -> dict:
        served = {k: v for k, v in head.items() if k != "id"}
        served.update(published=version, versions=versions, published_at_ms=now_ms(), published_by=by,
                      updated_at_ms=now_ms())
        await self._write(head_key(project_id, container), served)
        return {"id": container, **served}

    async def _write(self, key: str, record: dict | None) -> None:
        value = None if record is None else orjson.dumps(record)
        await self.writer.publish(tags_topic(self.settings), value, key.encode(), [])
        project_id, container, *number = key.split("/")
        if number:
            await self.store.wait_for(lambda s: s.version(project_id, container, int(number[0])) == record)
        else:
            await self.store.wait_for(lambda s: s.head(project_id, container) == record)

    def _project(self, project_id: str) -> None:
        if self.projects.get(project_id) is None:
            raise ProjectNotFound(f"no project {project_id!r}")
