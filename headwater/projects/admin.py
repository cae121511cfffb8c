"""Project operations shared by the admin API and the ``headwater project`` CLI.

Each operation reads the current record from the store, writes the whole new record to the projects
topic (acks=all) and waits until the store has seen it, so the caller can rely on the change.
Concurrent writers to the same project: the last write wins.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import re
import secrets
import time
from collections.abc import Callable, Sequence

import msgspec

from headwater.alerts import AlertsError, parse_alerts, test_alert
from headwater.clickhouse import make_client, project_database
from headwater.destinations import destination_group, merge_stored, shown
from headwater.envelope import encode_batch
from headwater.flow import INDEX_STEP
from headwater.migrations import apply_retention, migrate_project
from headwater.projects.model import PUBLIC, READ, SERVER, Key, Project, check_origin_pattern, key_hash, new_key
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.rewind import GroupBusy, rewind_group
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
from headwater.settings import Settings
from headwater.topics import alerts_topic, step_topic


class ProjectError(Exception):
    status = 400


class ProjectNotFound(ProjectError):
    status = 404


class SchemaNotFound(ProjectError):
    status = 404


class ProjectExists(ProjectError):
    status = 409


class DestinationNotFound(ProjectError):
    status = 404


@dataclasses.dataclass
class IssuedKeys:
    """Keys as plain text: shown once, when they are made. Only hashes are stored for server keys."""

    public_key: str
    server_key: str


MAX_GRACE_S = 365 * 86_400.0


class Configuration(msgspec.Struct, forbid_unknown_fields=True):
    """The types of what ``configure`` changes; each part's content is checked by its processor."""

    flow: list[str | dict] | None = None
    privacy: dict = {}
    enrich: dict = {}
    validation: dict = {}
    sessions: dict = {}
    retention_days: int | None = None
    destinations: list[dict] = []
    identity: dict = {}
    cohorts: list[dict] = []
    goals: list[dict] = []
    alerts: dict = {}


def now_ms() -> int:
    return int(time.time() * 1000)


def make_key(kind: str, value: str | None = None) -> tuple[Key, str]:
    value = value or new_key(kind)
    key = Key(kind, key_hash(value), value[:7], now_ms(), public_value=value if kind == PUBLIC else None)
    return key, value


def describe(project: Project) -> dict:
    """A project as the API and CLI show it: never a server key, only its prefix."""
    keys = [{"kind": k.kind, "prefix": k.prefix, "created_at_ms": k.created_at_ms,
             "expires_at_ms": k.expires_at_ms} for k in project.keys]
    return {"id": project.id, "name": project.name, "enabled": project.enabled, "origins": project.origins,
            "public_key": project.public_key, "database": project_database(project.id), "keys": keys,
            "created_at_ms": project.created_at_ms, "flow": project.flow, "privacy": project.privacy,
            "enrich": project.enrich, "validation": project.validation, "sessions": project.sessions,
            "retention_days": project.retention_days,
            "event_schemas": {event: [v["version"] for v in versions]
                              for event, versions in project.event_schemas.items()},
            "hash_key_ids": [k["id"] for k in project.hash_keys], "destinations": shown(project.destinations),
            "identity": project.identity, "cohorts": project.cohorts, "goals": project.goals,
            "alerts": project.alerts}


CONFIGURABLE = ("flow", "privacy", "enrich", "validation", "sessions", "retention_days", "destinations", "identity",
                "cohorts", "goals", "alerts")


def new_hash_key() -> dict:
    return {"id": secrets.token_hex(4), "secret": secrets.token_urlsafe(32), "created_at_ms": now_ms()}


class ProjectAdmin:
    """``check`` returns the problems of a project's processing configuration (processors/checks.py);
    a change with problems is refused with all of them."""

    def __init__(self, settings: Settings, store: ProjectStore, writer: ProjectWriter,
                 check: Callable[[Project], list[str]] = lambda project: []) -> None:
        self.settings = settings
        self.store = store
        self.writer = writer
        self.check = check

    def list(self) -> list[Project]:
        return sorted(self.store.projects.values(), key=lambda p: p.id)

    def get(self, project_id: str) -> Project:
        project = self.store.get(project_id)
        if project is None:
            raise ProjectNotFound(f"no project {project_id!r}")
        return project

    async def create(self, project_id: str, name: str = "", origins: Sequence[str] = (),
                     public_key: str | None = None, server_key: str | None = None) -> tuple[Project, IssuedKeys]:
        """Create the project and its ClickHouse database and tables."""
        try:
            project_database(project_id)
            clean_origins = [check_origin_pattern(o) for o in origins]
        except ValueError as exc:
            raise ProjectError(str(exc)) from exc
        if self.store.get(project_id):
            raise ProjectExists(f"project {project_id!r} exists")
        await asyncio.to_thread(self._clickhouse, migrate_project, project_id)
        public, public_value = make_key(PUBLIC, public_key)
        server, server_value = make_key(SERVER, server_key)
        project = Project(project_id, name or project_id, now_ms(), True, clean_origins, [public, server],
                          hash_keys=[new_hash_key()])
        await self._save(project)
        return project, IssuedKeys(public_value, server_value)

    async def apply(self, definition: dict, keys: dict | None = None) -> Project:
        """Make a project what ``definition`` says (``id``, optional ``name``, ``origins`` and any of
        :data:`CONFIGURABLE`), creating it, with the ``public_key`` and ``server_key`` of ``keys`` when
        given, if it does not exist. Running it again changes nothing. Keys of an existing project are
        left alone: rotate them with ``rotate-keys``."""
        unknown = set(definition) - {"id", "name", "origins", *CONFIGURABLE}
        if unknown or not isinstance(definition.get("id"), str):
            raise ProjectError(f"a project definition needs an id and may hold name, origins, "
                               f"{', '.join(CONFIGURABLE)}; not {', '.join(sorted(unknown)) or 'this'}")
        project_id, keys = definition["id"], keys or {}
        for kind in ("public_key", "server_key"):
            if kind in keys and not re.fullmatch(r"[A-Za-z0-9_-]{16,200}", str(keys[kind])):
                raise ProjectError(f"{project_id}: {kind} must be 16 to 200 letters, digits, - or _")
        if self.store.get(project_id) is None:
            await self.create(project_id, definition.get("name", ""), definition.get("origins", []),
                              public_key=keys.get("public_key"), server_key=keys.get("server_key"))
        elif "origins" in definition and definition["origins"] != self.get(project_id).origins:
            await self.set_origins(project_id, definition["origins"])
        changes = {name: definition[name] for name in CONFIGURABLE
                   if name in definition and definition[name] != getattr(self.get(project_id), name)}
        return await self.configure(project_id, changes) if changes else self.get(project_id)

    async def set_origins(self, project_id: str, origins: Sequence[str]) -> Project:
        try:
            clean = [check_origin_pattern(o) for o in origins]
        except ValueError as exc:
            raise ProjectError(str(exc)) from exc
        project = dataclasses.replace(self.get(project_id), origins=clean)
        await self._save(project)
        return project

    async def set_enabled(self, project_id: str, enabled: bool) -> Project:
        project = dataclasses.replace(self.get(project_id), enabled=enabled)
        await self._save(project)
        return project

    async def rotate_keys(self, project_id: str, grace_s: float) -> tuple[Project, IssuedKeys]:
        """Issue new write keys. Every write key that works now keeps working for at most ``grace_s`` more
        seconds; expired keys are dropped from the record. Dashboard read tokens are left as they are."""
        if isinstance(grace_s, bool) or not isinstance(grace_s, (int, float)) or not 0 <= grace_s <= MAX_GRACE_S:
            raise ProjectError(f"grace_seconds must be a number of seconds from 0 to {MAX_GRACE_S:.0f} (a year)")
        project = self.get(project_id)
        now = now_ms()
        expires = now + int(grace_s * 1000)
        kept = [k if k.kind == READ else dataclasses.replace(k, expires_at_ms=min(k.expires_at_ms or expires, expires))
                for k in project.keys if k.active(now)]
        public, public_value = make_key(PUBLIC)
        server, server_value = make_key(SERVER)
        project = dataclasses.replace(project, keys=[*kept, public, server])
        await self._save(project)
        return project, IssuedKeys(public_value, server_value)

    async def issue_read_token(self, project_id: str) -> tuple[Project, str]:
        """A new dashboard read token for the project (shown once; stored as a hash). It opens the
        project's dashboard pages except the admin-only ones, and is refused as a write key."""
        project = self.get(project_id)
        token, value = make_key(READ)
        project = dataclasses.replace(project, keys=[*project.keys, token])
        await self._save(project)
        return project, value

    async def revoke_read_tokens(self, project_id: str) -> Project:
        """Every read token of the project stops working at once."""
        project = self.get(project_id)
        project = dataclasses.replace(project, keys=[k for k in project.keys if k.kind != READ])
        await self._save(project)
        return project

    async def configure(self, project_id: str, changes: dict) -> Project:
        """Change the flow, privacy policy, enrichment or validation options."""
        unknown = set(changes) - set(CONFIGURABLE)
        if unknown:
            raise ProjectError(f"cannot configure {', '.join(sorted(unknown))}; only {', '.join(CONFIGURABLE)}")
        try:
            msgspec.convert(changes, Configuration)
        except msgspec.ValidationError as exc:
            raise ProjectError(f"the configuration is not of the right types: {exc}") from exc
        current = self.get(project_id)
        if "destinations" in changes:
            changes = {**changes, "destinations": merge_stored(changes["destinations"], current.destinations,
                                                                now_ms())}
        project = dataclasses.replace(current, **changes)
        await self._save(project)
        if "retention_days" in changes:
            await asyncio.to_thread(self._clickhouse, apply_retention, project_id, project.retention_days)
        return project

    async def add_schema(self, project_id: str, event: str, version: str, schema: dict) -> Project:
        """Register a JSON Schema for the ``properties`` of track events named ``event``."""
        project = self.get(project_id)
        versions = [v for v in project.event_schemas.get(event, []) if v.get("version") != version]
        schemas = {**project.event_schemas, event: [*versions, {"version": version, "schema": schema}]}
        project = dataclasses.replace(project, event_schemas=schemas)
        await self._save(project)
        return project

    def schemas(self, project_id: str) -> builtins.list[dict]:
        """Each event with a registered schema, and its versions in the order they were added (the last
        one applies)."""
        project = self.get(project_id)
        return [{"event": event, "versions": [v["version"] for v in versions]}
                for event, versions in sorted(project.event_schemas.items())]

    def schema(self, project_id: str, event: str) -> dict:
        """The event's schema versions with their documents; 404 when it has none."""
        versions = self.get(project_id).event_schemas.get(event)
        if not versions:
            raise SchemaNotFound(f"project {project_id} has no schema for event {event!r}")
        return {"event": event, "versions": versions, "applies": versions[-1]["version"]}

    async def delete_schema(self, project_id: str, event: str, version: str | None = None) -> Project:
        """Remove one version of the event's schema, or every version; 404 when there is no such one.
        Removing the version that applies makes the one before it apply; events validated before keep
        their rows."""
        project = self.get(project_id)
        versions = project.event_schemas.get(event) or []
        kept = [v for v in versions if version is not None and v["version"] != version]
        if len(kept) == len(versions):
            which = f"version {version} of " if version else ""
            raise SchemaNotFound(f"project {project_id} has no {which}schema for event {event!r}")
        schemas = {name: vs for name, vs in project.event_schemas.items() if name != event}
        if kept:
            schemas[event] = kept
        project = dataclasses.replace(project, event_schemas=schemas)
        await self._save(project)
        return project

    async def rotate_hash_key(self, project_id: str) -> Project:
        """A new HMAC key for hashed fields; values hashed before keep their old key's id."""
        project = self.get(project_id)
        project = dataclasses.replace(project, hash_keys=[*project.hash_keys, new_hash_key()])
        await self._save(project)
        return project

    def destination(self, project_id: str, name: str) -> dict:
        for entry in self.get(project_id).destinations:
            if entry.get("name") == name:
                return entry
        raise DestinationNotFound(f"project {project_id} has no destination {name!r}")

    async def set_destination_paused(self, project_id: str, name: str, paused: bool) -> Project:
        """Pause a destination (it stops reading; its group keeps its place) or resume it."""
        self.destination(project_id, name)
        entries = [{**e, "paused": paused} if e.get("name") == name else e for e in self.get(project_id).destinations]
        project = dataclasses.replace(self.get(project_id), destinations=entries)
        await self._save(project)
        return project

    async def replay_destination(self, project_id: str, name: str, from_ms: int) -> dict[int, int]:
        """Deliver the destination's events again from ``from_ms`` (within Kafka's retention): pause it,
        wait until its forwarders have left its group, move the group there, and resume it unless it
        was paused before. Return the offsets by partition of the index topic."""
        if isinstance(from_ms, bool) or not isinstance(from_ms, int) or not 0 <= from_ms <= now_ms():
            raise ProjectError("from: a time in the past (milliseconds since 1970, or ISO 8601 in the CLI)")
        was_paused = bool(self.destination(project_id, name).get("paused"))
        if not was_paused:
            await self.set_destination_paused(project_id, name, True)
        try:
            return await rewind_group(self.settings, destination_group(project_id, name),
                                      step_topic(self.settings, INDEX_STEP), from_ms)
        except GroupBusy as exc:
            raise ProjectError(f"{exc}: is a forwarder still running this destination?") from exc
        finally:
            if not was_paused:
                await self.set_destination_paused(project_id, name, False)

    async def send_test_alert(self, project_id: str, rule_name: str) -> str:
        """Raise a test alert of one of the project's rules into ``headwater.alerts``, for its channels
        (and its alerts table); return its id."""
        try:
            rules = {rule.name: rule for rule in parse_alerts(self.get(project_id).alerts).rules}
        except AlertsError as exc:
            raise ProjectError(str(exc)) from exc
        if rule_name not in rules:
            raise ProjectNotFound(f"project {project_id!r} has no alert rule {rule_name!r}")
        alert = test_alert(project_id, rules[rule_name], now_ms(), secrets.token_hex(8))
        await self.writer.publish(alerts_topic(self.settings), encode_batch([alert]), project_id.encode(),
                                  [(PROJECT_HEADER, project_id.encode()), (EVENTS_HEADER, b"1")])
        return alert.message_id

    async def _save(self, project: Project) -> None:
        problems = self.check(project)
        if problems:
            raise ProjectError("; ".join(problems))
        await self.writer.write(project)
        expected = project.to_dict()
        await self.store.wait_for(lambda s: s.get(project.id) and s.get(project.id).to_dict() == expected)

    def _clickhouse(self, operation, *args) -> None:
        client = make_client(self.settings)
        try:
            operation(client, *args)
        finally:
            client.disconnect()
