"""The one command line, ``headwater``, with a subcommand per role or job."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from headwater.settings import get_settings


def cmd_collector(args: argparse.Namespace) -> None:
    from collector.app import create_app
    from collector.protocol import IngestProtocol
    from headwater.serving import serve

    settings = get_settings()
    serve(create_app, settings, settings.collector_host, settings.collector_port, IngestProtocol)


def cmd_admin(args: argparse.Namespace) -> None:
    from admin.app import create_app
    from commands.checks import check_project
    from headwater.serving import serve

    settings = get_settings()
    serve(lambda: create_app(check_project, settings), settings, settings.admin_host, settings.admin_port)


def cmd_dashboard(args: argparse.Namespace) -> None:
    from commands.checks import check_project
    from dashboard.app import create_app
    from headwater.serving import serve
    from processors.validate import Validate

    settings = get_settings()
    serve(lambda: create_app(Validate, settings, check_project), settings, settings.dashboard_host,
          settings.dashboard_port)


def cmd_project(args: argparse.Namespace) -> None:
    from commands.project import main

    main(get_settings(), args)


def cmd_import(args: argparse.Namespace) -> None:
    from commands.imports import main

    main(get_settings(), args)


def cmd_tags(args: argparse.Namespace) -> None:
    from commands.tags import main

    main(get_settings(), args)


def cmd_transform(args: argparse.Namespace) -> None:
    from commands.transform import main

    main(get_settings(), args)


def cmd_mediator(args: argparse.Namespace) -> None:
    from headwater.service import run_role
    from mediator.service import Mediator
    from processors.checks import require_valid

    run_role(lambda: Mediator(get_settings(), require_valid).relay)


def cmd_processor(args: argparse.Namespace) -> None:
    from headwater.service import run_role
    from processors.registry import build_role

    run_role(lambda: build_role(args.names, get_settings()))


def cmd_indexer(args: argparse.Namespace) -> None:
    from headwater.service import run_role
    from indexer.service import Indexer, Indexers

    tables = list(dict.fromkeys(args.tables))
    run_role(lambda: Indexer(get_settings(), tables[0]) if len(tables) == 1 else Indexers(get_settings(), tables))


def cmd_forwarder(args: argparse.Namespace) -> None:
    from forwarder.service import Forwarders
    from headwater.service import run_role

    run_role(lambda: Forwarders(get_settings(), tuple(args.destinations)))


def cmd_identity(args: argparse.Namespace) -> None:
    from headwater.service import run_role
    from identity.service import Identifier

    run_role(lambda: Identifier.role(get_settings()))


def cmd_alerts(args: argparse.Namespace) -> None:
    from alerts.service import Alerter
    from headwater.service import run_role

    run_role(lambda: Alerter.role(get_settings()))


def cmd_lag_exporter(args: argparse.Namespace) -> None:
    from headwater.group_lag import LagExporter
    from headwater.service import run_role

    run_role(lambda: LagExporter(get_settings()))


def _stored_projects() -> list:
    import asyncio

    from headwater.projects.store import ProjectStore

    async def load():
        store = ProjectStore(get_settings())
        await store.start()
        await store.stop()
        return list(store.projects.values())

    return asyncio.run(load())


def cmd_migrate(args: argparse.Namespace) -> None:
    from headwater.clickhouse import make_client
    from headwater.migrations import migrate_project

    client = make_client(get_settings())
    try:
        for project in args.project or sorted(p.id for p in _stored_projects()):
            applied = migrate_project(client, project)
            print(f"{project}: applied {applied or 'nothing, up to date'}")
    finally:
        client.disconnect()


def cmd_topics(args: argparse.Namespace) -> None:
    import asyncio

    from headwater.kafka import ensure_topics

    created = asyncio.run(ensure_topics(get_settings()))
    print(f"created: {', '.join(created)}" if created else "every topic exists")


def cmd_replay(args: argparse.Namespace) -> None:
    import dataclasses
    import json

    report: Any
    if args.destination:
        from forwarder.replay import ReplayError, run_destination_replay

        try:
            report = run_destination_replay(get_settings(), args.project, args.destination, args.on_error)
        except ReplayError as exc:
            raise SystemExit(f"headwater replay: {exc}") from None
    else:
        from headwater.replay import run_replay
        from processors.validate import Validate

        report = run_replay(get_settings(), args.project, args.reason, args.on_error, Validate)
    print(json.dumps(dataclasses.asdict(report), indent=2))
    if report.stopped_at:
        raise SystemExit(1)


def cmd_erase(args: argparse.Namespace) -> None:
    import dataclasses
    import json

    from headwater.clickhouse import make_client
    from indexer.erase import erase

    client = make_client(get_settings())
    try:
        print(json.dumps(dataclasses.asdict(erase(client, get_settings(), args.project, args.user)), indent=2))
    except ValueError as exc:  # an empty or oversized id: refused before anything is deleted
        raise SystemExit(f"headwater erase: {exc}") from exc
    finally:
        client.disconnect()


def cmd_remerge(args: argparse.Namespace) -> None:
    import dataclasses
    import json

    from clickhouse_driver.errors import Error as ClickHouseError
    from clickhouse_driver.errors import ServerException

    from headwater.clickhouse import make_client
    from identity.remerge import remerge

    settings = get_settings()
    client = make_client(settings)
    try:
        report = remerge(client, settings, args.project, args.since, args.until)
    except ValueError as exc:
        raise SystemExit(f"headwater remerge: {exc}") from None
    except ServerException as exc:  # an unknown project's database, among others
        raise SystemExit(f"headwater remerge: ClickHouse refused it: {exc.message.splitlines()[0]}") from None
    except (ClickHouseError, OSError, EOFError) as exc:
        raise SystemExit(f"headwater remerge: cannot reach ClickHouse: {exc}") from None
    finally:
        client.disconnect()
    print(json.dumps(dataclasses.asdict(report), indent=2))


def utc_time(text: str):
    """An ISO date or time (UTC unless it names a zone), for ``--from`` and ``--to``."""
    import datetime as dt

    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time: {exc}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def cmd_backup(args: argparse.Namespace) -> None:
    import dataclasses
    import datetime as dt
    import json

    from headwater.backup import BackupError, backup, restore
    from headwater.clickhouse import make_client

    settings = get_settings()
    client = make_client(settings)
    try:
        if args.command == "backup":
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            report = backup(settings, client, Path(args.to or Path(settings.backup_dir) / f"headwater-{stamp}"))
        else:
            report = restore(settings, client, Path(args.source), force=args.force)
    except BackupError as exc:
        raise SystemExit(f"headwater {args.command}: {exc}") from None
    finally:
        client.disconnect()
    print(json.dumps(dataclasses.asdict(report), indent=2))


def cmd_check(args: argparse.Namespace) -> None:
    from commands.checks import check_configuration

    problems = check_configuration(get_settings(), _stored_projects())
    print("\n".join(problems) or "configuration ok")
    if problems:
        raise SystemExit(2)


def cmd_deploy(args: argparse.Namespace) -> None:
    from commands.deployment import render
    from commands.roles import DEPLOYMENT_TARGETS

    stale = render(check=args.check, targets=tuple(args.target or DEPLOYMENT_TARGETS))
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path}")
    if args.check and stale:
        raise SystemExit("headwater deploy: run `headwater deploy render` and commit the result")


def local_stack(module: str):
    """A module of the local stack, which lives in the source checkout (``devstack/``) and is not part
    of the installed package."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "devstack").is_dir():
        raise SystemExit("headwater: `up` and `dev` run the local stack from a source checkout: "
                         "run `make up` in the repository")
    if str(checkout) not in sys.path:
        sys.path.append(str(checkout))
    return importlib.import_module(f"devstack.{module}")


def cmd_up(args: argparse.Namespace) -> None:
    local_stack("up").run_up(get_settings())


def cmd_dev(args: argparse.Namespace) -> None:
    if args.server == "kafka":
        local_stack("kafka").run_broker(get_settings())
    else:
        local_stack("clickhouse").serve(get_settings())


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("headwater")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


SERVICE_ROLES = {"collector", "admin", "dashboard", "mediator", "processor", "indexer", "forwarder", "identity",
                 "alerts", "lag-exporter",
                 "up", "dev"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headwater", description="Headwater streaming analytics")
    parser.add_argument("--version", action="version", version=f"headwater {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collector", help="run the HTTP collector").set_defaults(func=cmd_collector)
    sub.add_parser("admin", help="run the admin (configurator) API").set_defaults(func=cmd_admin)
    sub.add_parser("dashboard", help="run the dashboards (overview, funnels, retention, live, sessions, "
                                     "failed events)").set_defaults(func=cmd_dashboard)
    from commands.project import add_parser as add_project_parser

    add_project_parser(sub)
    sub.choices["project"].set_defaults(func=cmd_project)
    from commands.imports import add_parser as add_import_parser

    add_import_parser(sub)
    sub.choices["import"].set_defaults(func=cmd_import)
    from commands.tags import add_parser as add_tags_parser

    add_tags_parser(sub)
    sub.choices["tags"].set_defaults(func=cmd_tags)
    from commands.transform import add_parser as add_transform_parser

    add_transform_parser(sub)
    sub.choices["transform"].set_defaults(func=cmd_transform)
    sub.add_parser("mediator", help="route raw events into their project's flow").set_defaults(func=cmd_mediator)
    processor = sub.add_parser("processor", help="run one processor of the flow, or several stateless ones "
                               "in one process")
    processor.add_argument("names", nargs="+", metavar="name",
                           help="validate, enrich, anonymize, transform or sessionize; several stateless "
                           "steps (e.g. validate enrich anonymize transform) run in one process, each still in its own "
                           "consumer group, and pass events to each other without Kafka hops")
    processor.set_defaults(func=cmd_processor)
    indexer = sub.add_parser("indexer", help="load tables into ClickHouse (one consumer group per table)")
    indexer.add_argument("tables", nargs="*", default=["events"],
                         choices=["events", "sessions", "failed_events", "step_counts", "person_ids", "alerts"])
    indexer.set_defaults(func=cmd_indexer)
    forwarder = sub.add_parser("forwarder", help="deliver each project's events to its destinations (one "
                               "consumer group per destination)")
    forwarder.add_argument("destinations", nargs="*", metavar="PROJECT/NAME",
                           help="only these destinations (default: every destination of every project)")
    forwarder.set_defaults(func=cmd_forwarder)
    sub.add_parser("identity", help="merge each project's distinct ids into persons (identify, alias), into "
                   "the compacted topic the indexer loads as person_ids").set_defaults(func=cmd_identity)
    sub.add_parser("alerts", help="raise each project's alerts (event, visitor and threshold rules) into "
                   "headwater.alerts, for its channels and its alerts table").set_defaults(func=cmd_alerts)
    sub.add_parser("lag-exporter", help="export every consumer group's lag and members, measured at the broker "
                   "(so it keeps growing while a step is down)").set_defaults(func=cmd_lag_exporter)
    migrate = sub.add_parser("migrate", help="apply ClickHouse migrations to every project (or those named)")
    migrate.add_argument("--project", action="append", help="a project id (repeatable; default: every project)")
    migrate.set_defaults(func=cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics that are missing (replication factor 1: a "
                   "single broker; clusters get theirs from the deployment files)").set_defaults(func=cmd_topics)
    replay = sub.add_parser("replay", help="re-inject a project's dead letters after a fix")
    replay.add_argument("--project", required=True)
    replay.add_argument("--reason", help="only dead letters with this reason")
    replay.add_argument("--destination", metavar="NAME", help="deliver the dead letters this destination refused "
                        "to it again (with its definition as it is now), instead of re-injecting into the pipeline")
    from headwater.replay import POLICIES

    replay.add_argument("--on-error", choices=POLICIES, default="stop",
                        help="what to do with an event that is still invalid (default: stop)")
    replay.set_defaults(func=cmd_replay)
    backup = sub.add_parser("backup", help="back up every project's ClickHouse database and the project "
                            "registry (keys, policies, schemas, sealed salts) into a new directory")
    backup.add_argument("--to", help="the new directory (default: backup_dir/headwater-<time>); the ClickHouse "
                        "server must see it at the same path")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup into a deployment that does not hold its "
                             "projects yet; start the roles afterwards")
    restore.add_argument("--from", dest="source", required=True, help="the backup's directory")
    restore.add_argument("--force", action="store_true", help="write over projects and add to tables that exist")
    restore.set_defaults(func=cmd_backup)
    erase = sub.add_parser("erase", help="delete a person's events, sessions and ids, every id merged with the "
                           "one given (right to erasure)")
    erase.add_argument("--project", required=True)
    erase.add_argument("--user", required=True, help="a user id or an anonymous id")
    erase.set_defaults(func=cmd_erase)
    remerge = sub.add_parser("remerge", help="apply a project's stored identify and alias calls again: those "
                             "older than Kafka keeps, or refused before an identity setting changed")
    remerge.add_argument("--project", required=True)
    remerge.add_argument("--from", dest="since", type=utc_time, help="calls sent at or after (default: all)")
    remerge.add_argument("--to", dest="until", type=utc_time, help="calls sent before (default: all)")
    remerge.set_defaults(func=cmd_remerge)
    from analytics.cli import add_parsers as add_analytics_parsers

    add_analytics_parsers(sub)
    from analytics.discover_cli import add_parser as add_discover_parser

    add_discover_parser(sub)
    sub.add_parser("check", help="check every flow and processor configuration").set_defaults(func=cmd_check)
    sub.add_parser("up", help="start Kafka, ClickHouse and every role locally").set_defaults(func=cmd_up)
    deploy = sub.add_parser("deploy", help="generate the deployment files from the topic and role definitions")
    deploy.add_argument("action", choices=["render"])
    deploy.add_argument("--check", action="store_true", help="only report files that are out of date")
    from commands.roles import DEPLOYMENT_TARGETS

    deploy.add_argument("--target", action="append", choices=DEPLOYMENT_TARGETS,
                        help="only this kind of file (repeatable; default: every kind)")
    deploy.set_defaults(func=cmd_deploy)
    dev = sub.add_parser("dev", help="run one local server in the foreground (for the local stack)")
    dev.add_argument("server", choices=["kafka", "clickhouse"])
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from headwater.log import configure_logging

    try:
        settings = get_settings()
    except ValueError as exc:  # a bad or placeholder setting: its name and why, not a traceback
        raise SystemExit(f"headwater {args.command}: {exc}") from None
    service = args.command in SERVICE_ROLES
    configure_logging(settings, args.command, None if service else sys.stderr)
    args.func(args)


if __name__ == "__main__":
    main(sys.argv[1:])
