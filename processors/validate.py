"""The validate step: every event against the schemas in ``schemas/``, and track events against the
schema their project registered for that event name.

An event that fails becomes a dead-letter record with a typed reason (``schema_violation``,
``size``, ``unknown_event``), the path of the field that failed, and the original event.

Per project (``project.validation``): ``{"strict_events": true}`` refuses track events whose name has
no registered schema. Custom schemas (``project.event_schemas``) describe a track event's
``properties``; they are registered through the admin API or ``headwater project add-schema``, with
versions ``MODEL-REVISION-ADDITION``; the newest version applies.
"""

from __future__ import annotations

import re

from headwater.deadletter import Rejected
from headwater.envelope import Envelope, TooDeep, event_size
from headwater.options import check_options
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.schemas import Schema, compile_schema, load_schema
from headwater.settings import Settings
from processors.base import Processor

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
VALIDATION_OPTIONS = {"strict_events"}
VERSION = re.compile(r"\d+-\d+-\d+")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-"))


def check_validation(raw: object) -> list[str]:
    return check_options("validation", raw, VALIDATION_OPTIONS, flags=("strict_events",))


def check_event_schemas(raw: object) -> list[str]:
    """Every registered schema must have a version and compile against the draft 2020-12 meta-schema."""
    if not isinstance(raw, dict):
        return ["event_schemas must be an object"]
    errors = []
    for event, versions in raw.items():
        for entry in versions if isinstance(versions, list) else [None]:
            if not isinstance(entry, dict) or not VERSION.fullmatch(str(entry.get("version", ""))):
                errors.append(f"event_schemas[{event!r}]: each entry needs a version like 1-0-0 and a schema")
                continue
            try:
                compile_schema(entry.get("schema"))  # type: ignore[arg-type]  # a non-object is refused here
            except Exception as exc:  # jsonschema's SchemaError and friends
                errors.append(f"event_schemas[{event!r}] {entry['version']}: invalid schema: {str(exc)[:200]}")
    return errors


def check_project(project: Project) -> list[str]:
    """The project's validation options and registered event schemas."""
    return check_validation(project.validation) + check_event_schemas(project.event_schemas)


def check_settings(settings: Settings) -> list[str]:
    """The deployment-wide configuration of this processor: its bundled schemas load."""
    errors = []
    for kind in ("segment_event", *EVENT_TYPES):
        try:
            load_schema("headwater", kind, "1-0-0")
        except Exception as exc:
            errors.append(f"schemas/headwater/{kind}/1-0-0.json: {exc}")
    return errors


def _reject(schema: Schema, instance: object, prefix: str = "") -> None:
    first = schema.errors(instance, limit=1)[0]
    path = f"{prefix}.{first['field']}".strip(".") if first["field"] else prefix
    raise Rejected("schema_violation", first["reason"], path)


class Validate(Processor):
    name = "validate"

    def __init__(self, settings: Settings, store: ProjectStore) -> None:
        super().__init__(settings)
        self.store = store
        self.envelope_schema = load_schema("headwater", "segment_event", "1-0-0")
        self.type_schemas = {kind: load_schema("headwater", kind, "1-0-0") for kind in EVENT_TYPES}
        # Both checks in one call per event (each call converts the whole event); the two schemas
        # apart name the field when it fails.
        self.both = {kind: compile_schema({"allOf": [self.envelope_schema.document, schema.document]})
                     for kind, schema in self.type_schemas.items()}
        self.custom: dict[tuple[str, str, str], Schema] = {}

    def process(self, envelope: Envelope) -> Envelope | None:
        event = envelope.event
        kind = event.get("type")
        both = self.both.get(kind) if isinstance(kind, str) else None  # unhashable types are not kinds
        if both is None or not both.is_valid(event):
            if not self.envelope_schema.is_valid(event):
                _reject(self.envelope_schema, event)
            type_schema = self.type_schemas[event["type"]]
            if not type_schema.is_valid(event):
                _reject(type_schema, event)
        try:
            size = event_size(event)
        except TooDeep as exc:  # the collector refuses these; they can only come another way
            raise Rejected("size", str(exc)) from exc
        if size > self.settings.max_event_bytes:
            raise Rejected("size", f"{size} bytes; the limit is {self.settings.max_event_bytes}")
        if event["type"] == "track":
            self._check_custom(self.store.get(envelope.project_id), event)
        return envelope

    def _check_custom(self, project: Project | None, event: dict) -> None:
        versions = project.event_schemas.get(event["event"]) if project else None
        if not versions or project is None:
            if project and project.validation.get("strict_events"):
                raise Rejected("unknown_event", f"no schema is registered for {event['event']!r}", "event")
            return
        newest = max(versions, key=lambda v: version_key(v["version"]))
        cache_key = (project.id, event["event"], newest["version"])
        schema = self.custom.get(cache_key) or self.custom.setdefault(cache_key, compile_schema(newest["schema"]))
        properties = event.get("properties") or {}
        if not schema.is_valid(properties):
            _reject(schema, properties, "properties")
