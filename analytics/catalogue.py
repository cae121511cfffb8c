"""The event catalogue as a document: per event name and call type, its volume, first and last seen,
its properties with the types seen, and the schemas registered for it (the admin API's and the Flow
page's view of :func:`analytics.queries.catalogue`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analytics import queries
from analytics.run import records
from headwater.clickhouse import make_client
from headwater.projects.model import Project
from headwater.settings import Settings

MAX_CATALOGUE_DAYS = 3_660


def project_catalogue(settings: Settings, project: Project, days: int) -> dict:
    """The project's catalogue over the last ``days`` (blocking: run it in a thread from async code)."""
    until = datetime.now(UTC)
    client = make_client(settings)
    try:
        found = records(client, queries.catalogue(project.id, until - timedelta(days=days), until))
    finally:
        client.disconnect()
    return {"project": project.id, "days": days, "events": catalogue_document(found, project.event_schemas or {})}


def catalogue_document(rows: list[dict], schemas: dict[str, Any]) -> list[dict]:
    """The records of :func:`analytics.queries.catalogue`, nested by event; ``schemas`` is the project's
    ``event_schemas`` (each event's registered versions)."""
    events: dict[tuple[str, str], dict] = {}
    for row in rows:
        event, kind, prop, value_type = row["event"], row["type"], row["property"], row["value_type"]
        count, first, last = row["events"], row["first_seen"], row["last_seen"]
        entry = events.setdefault((event, kind), {
            "event": event, "type": kind, "events": 0, "first_seen": None, "last_seen": None, "properties": {},
            "schema_versions": [v.get("version") for v in schemas.get(event, []) if isinstance(v, dict)]
            if kind == "track" else []})
        if prop == "":
            entry.update(events=count, first_seen=_iso(first), last_seen=_iso(last))
            continue
        field = entry["properties"].setdefault(prop, {"name": prop, "types": {}, "events": 0,
                                                      "first_seen": _iso(first), "last_seen": _iso(last)})
        field["types"][value_type] = count
        field["events"] += count
        field["first_seen"] = min(field["first_seen"], _iso(first))
        field["last_seen"] = max(field["last_seen"], _iso(last))
    return [{**entry, "properties": sorted(entry["properties"].values(), key=lambda p: (-p["events"], p["name"]))}
            for entry in sorted(events.values(), key=lambda e: (-e["events"], e["event"], e["type"]))]


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
