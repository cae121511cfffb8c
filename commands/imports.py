"""``headwater import PLAN.json``: load the team's production tables into a project's ClickHouse database
(importer/), with each table's progress on the terminal and a JSON summary at the end."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from headwater.clickhouse import make_client, project_database
from headwater.settings import Settings
from importer.load import SourceError, TableLoader
from importer.plan import PlanError, parse_plan


def add_parser(sub) -> None:
    parser = sub.add_parser("import", help="load tables from PostgreSQL, MySQL, CSV or Parquet into a project's "
                            "database as imported_<name> (full or incremental; re-runs duplicate nothing)")
    parser.add_argument("plan", help="the import plan, JSON (docs/imports.md)")
    parser.add_argument("--only", action="append", metavar="NAME", help="only this table of the plan (repeatable)")


def main(settings: Settings, args: argparse.Namespace) -> None:
    try:
        plan = parse_plan(Path(args.plan).read_bytes())
    except OSError as exc:
        raise SystemExit(f"error: {exc}") from exc
    except PlanError as exc:
        raise SystemExit("error: the plan has problems:\n  " + "\n  ".join(exc.problems)) from exc
    tables = [t for t in plan.tables if not args.only or t.name in args.only]
    client, database = make_client(settings), project_database(plan.project)
    if not client.execute(f"EXISTS DATABASE {database}")[0][0]:
        raise SystemExit(f"error: no project {plan.project!r} (its database {database} is missing)")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,.0f} rows"),
               TextColumn("{task.fields[megabytes]:,.1f} MB read"), TimeElapsedColumn())
    done = []
    with Progress(*columns, console=Console(stderr=True)) as bars:
        for spec in tables:
            task = bars.add_task(f"imported_{spec.name}", megabytes=0.0)

            def advance(rows: int, size: int, task=task) -> None:
                bars.update(task, advance=rows, megabytes=bars.tasks[task].fields["megabytes"] + size / 1e6)

            try:
                done.append(dataclasses.asdict(TableLoader(client, plan.project, advance).load(spec)))
            except SourceError as exc:
                raise SystemExit(f"error: {exc}") from exc
            finally:
                bars.stop_task(task)
    client.disconnect()
    print(json.dumps({"project": plan.project, "tables": done}, indent=2))
