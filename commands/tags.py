"""``headwater tags ...``: a project's tag manager containers from the command line, straight to Kafka (no
admin API needed). ``export`` and ``import`` move a container's draft as a JSON file, so containers
can live in git: export, edit, commit, import, publish."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from commands.project import run_printed
from headwater.projects.admin import ProjectError
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings
from headwater.tags.admin import ContainerAdmin
from headwater.tags.store import ContainerStore


async def run_operation(settings: Settings, args: argparse.Namespace) -> dict:
    projects, writer, store = ProjectStore(settings), ProjectWriter(settings), ContainerStore(settings)
    await writer.start()
    await projects.start()
    await store.start()
    admin = ContainerAdmin(settings, projects, store, writer)
    try:
        return await _operation(admin, args)
    finally:
        await store.stop()
        await projects.stop()
        await writer.stop()


async def _operation(admin: ContainerAdmin, args: argparse.Namespace) -> dict:
    if args.action == "list":
        return {"containers": admin.summaries(args.project)}
    if args.action == "show":
        return {"container": admin.get(args.project, args.container)}
    if args.action == "export":
        head = admin.get(args.project, args.container)
        return {"name": head["name"], "definition": head["draft"]}
    if args.action == "import":
        try:
            exported = json.loads(Path(args.file).read_text())
        except (OSError, ValueError) as exc:
            raise ProjectError(f"{args.file}: {exc}") from exc
        if not isinstance(exported, dict) or not isinstance(exported.get("definition"), dict):
            raise ProjectError(f"{args.file}: not an export (an object with name and definition)")
        return {"container": await admin.save(args.project, args.container, str(exported.get("name") or ""),
                                              exported["definition"], by="cli")}
    if args.action == "publish":
        return {"container": await admin.publish(args.project, args.container, args.note or "", by="cli")}
    if args.action == "rollback":
        return {"container": await admin.rollback(args.project, args.container, args.version, by="cli")}
    if args.action == "preview":
        token = admin.preview_token(args.project, args.container)
        return {"token": token, "page_parameter": f"hw_tm_preview={token}"}
    await admin.delete(args.project, args.container)
    return {"deleted": args.container}


def add_parser(sub) -> None:
    parser = sub.add_parser("tags", help="the tag manager: list, export, import, publish, roll back and preview "
                            "a project's containers")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the project's containers").add_argument("project")
    for action, text in (("show", "a container's draft, versions and what it serves"),
                         ("export", "a container's draft as JSON (name and definition), for a file in git"),
                         ("preview", "a preview token: open a page with ?hw_tm_preview=TOKEN to run the draft"),
                         ("delete", "delete a container and every version of it")):
        one = actions.add_parser(action, help=text)
        one.add_argument("project")
        one.add_argument("container")
    imported = actions.add_parser("import", help="save an exported file as the container's draft (creating it)")
    imported.add_argument("project")
    imported.add_argument("container")
    imported.add_argument("file")
    publish = actions.add_parser("publish", help="publish the draft as a new version")
    publish.add_argument("project")
    publish.add_argument("container")
    publish.add_argument("--note", help="what changed")
    rollback = actions.add_parser("rollback", help="serve an earlier version again")
    rollback.add_argument("project")
    rollback.add_argument("container")
    rollback.add_argument("version", type=int)


def main(settings: Settings, args: argparse.Namespace) -> None:
    run_printed(run_operation, settings, args)
