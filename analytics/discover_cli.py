"""``headwater discover funnels|drivers|paths …``: discovery (:mod:`analytics.discovery`) from the shell.

- ``funnels [--target STEP] [--rank volume|dropoff]``: candidate funnels with exact counts per step;
- ``drivers --target STEP``: steps and first-touch properties that go with converting, tested;
- ``paths STEP [--direction from|to] [--depth N]``: the links of the paths from or to a step.

They take the query commands' ``--project``, ``--from``, ``--to``, ``--tz``, ``--format`` and ``--sql``
(which prints the first queries' SQL: the funnels' exact recount is built from what mining finds).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from analytics import discovery
from analytics.cli import common_arguments, conditions_of, on_clickhouse, range_of, where_argument
from analytics.discovery import Discovery
from analytics.filters import Filters
from analytics.lift import Drivers
from analytics.queries import Query
from analytics.run import as_table, records, rendered_sql


def add_parser(sub) -> None:
    parser = sub.add_parser("discover", help="find funnels, paths and the drivers of a conversion in a project's "
                            "events (docs/discovery.md)")
    kinds = parser.add_subparsers(dest="discovery", required=True)
    funnels = kinds.add_parser("funnels", help="candidate funnels: frequent step sequences, counted exactly")
    drivers = kinds.add_parser("drivers", help="steps and first-touch properties that make a target more or "
                               "less likely, with intervals and an adjustment for the number tested")
    paths = kinds.add_parser("paths", help="the paths sessions take from (or to) a step")
    for made in (funnels, drivers, paths):
        common_arguments(made)
        made.add_argument("--format", choices=["table", "json"], default="table")
        made.add_argument("--include-bots", action="store_true", help="count events from crawlers too")
        where_argument(made)
        made.set_defaults(func=cmd_discover)
    funnels.add_argument("--target", help="only funnels ending at this step (an event, or a page path)")
    funnels.add_argument("--rank", choices=discovery.RANKINGS, default="volume",
                         help="by sessions completing (volume) or lost at the worst step (dropoff)")
    funnels.add_argument("--sample", type=int, default=discovery.MINING_SAMPLE_EVENTS,
                         help="events mining reads, whole visitors (the counts are always exact)")
    drivers.add_argument("--target", required=True, help="the conversion: an event, or a page path")
    paths.add_argument("step", help="an event, or a page path")
    paths.add_argument("--direction", choices=discovery.DIRECTIONS, default="from")
    paths.add_argument("--depth", type=int, default=4, help=f"steps away from STEP (1 to {discovery.MAX_DEPTH})")


def _options(args: argparse.Namespace) -> dict:
    if args.discovery == "funnels":
        return {"target": args.target, "rank": args.rank, "sample_events": args.sample}
    if args.discovery == "drivers":
        return {"target": args.target}
    return {"path_step": args.step, "direction": args.direction, "depth": args.depth}


def cmd_discover(args: argparse.Namespace) -> None:
    since, until = range_of(args)
    options = _options(args)

    def work(client) -> str:
        filters = Filters(include_bots=args.include_bots, where=conditions_of(args))
        if args.sql:
            first = discovery.first_queries(args.project, since, until, filters,
                                            **{k: v for k, v in options.items() if k != "rank"})
            return "".join(f"-- {name}\n{rendered_sql(client, query)}" for name, query in first.items())

        async def run(queries: dict[str, Query]) -> dict[str, list[dict]]:
            return {name: records(client, query) for name, query in queries.items()}

        return _shown(args, asyncio.run(discovery.discover(run, args.project, since, until, filters, **options)))

    on_clickhouse(f"discover {args.discovery}", args.project, work)


def _shown(args: argparse.Namespace, found: Discovery) -> str:
    if args.discovery == "funnels":
        rows = [f.as_dict() for f in found.funnels]
        if args.format == "json":
            return json.dumps({"sampled_sessions": found.sampled, "funnels": rows}, ensure_ascii=False) + "\n"
        return _funnels_table(found) + f"(mined from {found.sampled:,} sampled sessions; counts are exact)\n"
    if args.discovery == "drivers":
        assert found.drivers is not None
        if args.format == "json":
            return json.dumps(_drivers_json(found.drivers), ensure_ascii=False) + "\n"
        return _drivers_table(found.drivers)
    assert found.paths is not None
    if args.format == "json":
        return json.dumps(found.paths, ensure_ascii=False) + "\n"
    links = Query("", {}, ("source", "target", "sessions"))
    return as_table(links, [(link["source"], link["target"], link["sessions"]) for link in found.paths["links"]])


def _funnels_table(found: Discovery) -> str:
    query = Query("", {}, ("steps", "sessions at each step", "conversion", "worst drop"))
    return as_table(query, [(" → ".join(f.steps), " / ".join(f"{n:,}" for n in f.reached), f"{f.conversion:.1%}",
                             f"step {f.worst_step}: {f.drop_rate(f.worst_step):.1%}") for f in found.funnels])


def _drivers_json(found: Drivers) -> dict:
    return {"visitors": found.visitors, "converted": found.converted, "tested": found.tested, "alpha": found.alpha,
            "adjustment": "holm", "drivers": [d.as_dict() for d in found.drivers]}


def _ratio(value: float | None) -> str:
    return "∞" if value is None else f"{value:.2f}"


def _drivers_table(found: Drivers) -> str:
    query = Query("", {}, ("feature", "visitors", "conversion", "lift (95% CI)", "p adjusted", "significant"))
    table = as_table(query, [(f"{d.dimension} = {d.value}", f"{d.visitors:,}", f"{d.rate:.1%}",
                              f"{_ratio(d.lift)} ({_ratio(d.low)}–{_ratio(d.high)})", f"{d.p_adjusted:.2g}",
                              "yes" if d.significant else "") for d in found.drivers])
    return table + (f"({found.visitors:,} visitors, {found.rate:.1%} converted; {found.tested} features tested, "
                    f"p-values adjusted by Holm's method)\n")
