"""``headwater project ...``: the admin operations from the command line, straight to Kafka and
ClickHouse (no admin API needed)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from analytics.catalogue import MAX_CATALOGUE_DAYS, project_catalogue
from commands.checks import check_project
from headwater.flow import INDEX_STEP, FlowError, parse_flow
from headwater.projects.admin import CONFIGURABLE, ProjectAdmin, ProjectError, describe
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings


async def run_operation(settings: Settings, args: argparse.Namespace) -> dict:
    store, writer = ProjectStore(settings), ProjectWriter(settings)
    await writer.start()
    await store.start()
    admin = ProjectAdmin(settings, store, writer, check_project)
    try:
        if args.action == "create":
            project, keys = await admin.create(args.id, args.name or "", args.origin or [])
            return {"project": describe(project), "keys": vars(keys)}
        if args.action == "list":
            return {"projects": [describe(p) for p in admin.list()]}
        if args.action == "show":
            return {"project": describe(admin.get(args.id))}
        if args.action == "set-origins":
            return {"project": describe(await admin.set_origins(args.id, args.origins))}
        if args.action == "rotate-keys":
            grace = settings.key_grace_s if args.grace_seconds is None else args.grace_seconds
            project, keys = await admin.rotate_keys(args.id, grace)
            return {"project": describe(project), "keys": vars(keys)}
        if args.action == "configure":
            changes = {name: json.loads(getattr(args, name)) for name in CONFIGURABLE
                       if getattr(args, name) is not None}
            return {"project": describe(await admin.configure(args.id, changes))}
        if args.action == "add-schema":
            schema = json.loads(Path(args.file).read_text())
            return {"project": describe(await admin.add_schema(args.id, args.event, args.version, schema))}
        if args.action == "schemas":
            return {"schemas": admin.schemas(args.id)}
        if args.action == "show-schema":
            return admin.schema(args.id, args.event)
        if args.action == "delete-schema":
            return {"project": describe(await admin.delete_schema(args.id, args.event, args.version))}
        if args.action == "catalogue":
            return await asyncio.to_thread(project_catalogue, settings, admin.get(args.id), args.days)
        if args.action == "route":
            flow = json.loads(Path(args.flow).read_text()) if args.flow else admin.get(args.id).flow
            return route_events(flow, json.loads(Path(args.event).read_text()))
        if args.action == "apply":
            definitions = json.loads(Path(args.file).read_text())
            keys = json.loads(Path(args.keys).read_text()) if args.keys else {}
            applied = [await admin.apply(d, keys.get(d.get("id"))) for d in definitions]
            return {"projects": [describe(p) for p in applied]}
        if args.action in ("pause-destination", "resume-destination"):
            paused = args.action == "pause-destination"
            return {"project": describe(await admin.set_destination_paused(args.id, args.name, paused))}
        if args.action == "replay-destination":
            offsets = await admin.replay_destination(args.id, args.name, parse_time_ms(args.since))
            return {"destination": args.name, "offsets": offsets}
        if args.action == "rotate-hash-key":
            return {"project": describe(await admin.rotate_hash_key(args.id))}
        if args.action == "read-token":
            if args.revoke:
                return {"project": describe(await admin.revoke_read_tokens(args.id))}
            project, token = await admin.issue_read_token(args.id)
            return {"project": describe(project), "read_token": token}
        return {"project": describe(await admin.set_enabled(args.id, args.action == "enable"))}
    finally:
        await store.stop()
        await writer.stop()


def parse_time_ms(text: str) -> int:
    """Milliseconds since 1970 from ISO 8601 (``2026-12-06T10:00:00Z``; UTC when no zone is given)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProjectError(f"--from: {text!r} is not an ISO 8601 time like 2026-12-06T10:00:00Z") from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def route_events(flow: list | None, given: object) -> dict:
    """The route each given event takes through ``flow`` (the default flow when ``None``), and whether
    it is stored: the harness for writing a flow's conditions."""
    try:
        parsed = parse_flow(flow)
    except FlowError as exc:
        raise ProjectError(str(exc)) from exc
    listed = given if isinstance(given, list) else [given]
    events = [event for event in listed if isinstance(event, dict)]
    if len(events) != len(listed):
        raise ProjectError("--event holds an event (a JSON object) or a list of them")
    routes = [parsed.route(event) for event in events]
    return {"events": [{"messageId": event.get("messageId"), "route": list(route), "stored": INDEX_STEP in route}
                       for event, route in zip(events, routes)]}


def add_parser(sub) -> None:
    parser = sub.add_parser("project", help="create and manage projects, keys and origins")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a project and its ClickHouse database")
    create.add_argument("id")
    create.add_argument("--name")
    create.add_argument("--origin", action="append", help="an allowed browser origin (repeatable)")
    actions.add_parser("list")
    for action in ("show", "disable", "enable"):
        actions.add_parser(action).add_argument("id")
    origins = actions.add_parser("set-origins", help="replace the allowed origins")
    origins.add_argument("id")
    origins.add_argument("origins", nargs="*")
    rotate = actions.add_parser("rotate-keys", help="issue new keys; the old ones work for a grace period")
    rotate.add_argument("id")
    rotate.add_argument("--grace-seconds", type=float)
    configure = actions.add_parser("configure", help="set the flow, privacy, enrich or validation options (JSON)")
    configure.add_argument("id")
    for name in CONFIGURABLE:
        configure.add_argument(f"--{name}", help=f"the project's {name}, as JSON")
    schema = actions.add_parser("add-schema", help="register a JSON Schema for a track event's properties")
    schema.add_argument("id")
    schema.add_argument("event")
    schema.add_argument("version", help="MODEL-REVISION-ADDITION, like 1-0-0")
    schema.add_argument("file", help="a JSON Schema file")
    actions.add_parser("schemas", help="list the events with a registered schema and their versions").add_argument("id")
    show_schema = actions.add_parser("show-schema", help="print an event's schema versions (the last one applies)")
    show_schema.add_argument("id")
    show_schema.add_argument("event")
    delete_schema = actions.add_parser("delete-schema", help="remove an event's schema, or one version of it")
    delete_schema.add_argument("id")
    delete_schema.add_argument("event")
    delete_schema.add_argument("--version", help="only this version (default: every version)")
    catalogue = actions.add_parser("catalogue", help="the project's events, their properties and types, with "
                                                     "volumes, first and last seen, and their schemas")
    catalogue.add_argument("id")
    catalogue.add_argument("--days", type=int, default=30, choices=range(1, MAX_CATALOGUE_DAYS + 1),
                           metavar="DAYS", help="the last DAYS days (default 30)")
    route = actions.add_parser("route", help="print the steps each event of a file would go through (the "
                               "project's flow, or --flow FILE before it is configured)")
    route.add_argument("id")
    route.add_argument("--event", required=True, help="a JSON file: one event, or a list of events")
    route.add_argument("--flow", help="a JSON file with a flow to try instead of the project's")
    for action, text in (("pause-destination", "stop delivering to a destination (it keeps its place)"),
                         ("resume-destination", "deliver again from where it stopped")):
        destination = actions.add_parser(action, help=text)
        destination.add_argument("id")
        destination.add_argument("name")
    replay = actions.add_parser("replay-destination", help="deliver a destination's events again from a point in "
                                "time (within Kafka's retention)")
    replay.add_argument("id")
    replay.add_argument("name")
    replay.add_argument("--from", dest="since", required=True, help="ISO 8601, like 2026-12-06T10:00:00Z")
    actions.add_parser("rotate-hash-key", help="a new HMAC key for hashed fields").add_argument("id")
    read = actions.add_parser("read-token", help="issue a dashboard read token for the project")
    read.add_argument("id")
    read.add_argument("--revoke", action="store_true", help="revoke every read token of the project instead")
    apply = actions.add_parser("apply", help="create or update projects from a JSON list of definitions "
                                             "(id, name, origins, flow, privacy, enrich, validation, sessions, "
                                             "retention_days, destinations, identity, cohorts, goals, alerts); "
                                             "idempotent")
    apply.add_argument("file")
    apply.add_argument("--keys", help="JSON {project id: {public_key, server_key}}, used when a project is created")


def run_printed(operation, settings: Settings, args: argparse.Namespace) -> None:
    """Run ``operation(settings, args)`` and print its result as JSON; a refusal exits with its reason."""
    try:
        result = asyncio.run(operation(settings, args))
    except ProjectError as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(json.dumps(result, indent=2))


def main(settings: Settings, args: argparse.Namespace) -> None:
    run_printed(run_operation, settings, args)
