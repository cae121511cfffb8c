"""Discovery on real ClickHouse, on sessions with planted structure among noise (tests/planted.py).
Discovery must rank the planted ones first and call none of the nulls significant, and every
count must match an independent computation over the same events in Python."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import uuid
from collections import Counter

import pytest

from analytics import discovery
from analytics.discovery import END, OTHER
from analytics.filters import Filters
from analytics.run import records
from headwater.clickhouse import project_database
from headwater.migrations import migrate_project
from tests.planted import FUNNEL, NOISE, NULL_PAGES, SINCE, TARGET, UNTIL, generate, insert

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planted(clickhouse):
    project = f"d_{uuid.uuid4().hex[:8]}"
    migrate_project(clickhouse, project)
    events = generate()
    insert(clickhouse, project, events)
    yield project, events
    clickhouse.execute(f"DROP DATABASE {project_database(project)} SYNC")


def sequences(events: list[dict]) -> dict[str, list[str]]:
    """Each session's steps in time order, a repeat back to back kept once: the reference."""
    by_session: dict[str, list[tuple]] = {}
    for e in events:
        by_session.setdefault(e["session_id"], []).append((e["timestamp"], e["url_path"] or e["event"]))
    out = {}
    for session, steps in by_session.items():
        ordered = [step for _, step in sorted(steps)]
        out[session] = [s for i, s in enumerate(ordered) if i == 0 or s != ordered[i - 1]]
    return out


def has_in_order(sequence: list[str], steps: tuple[str, ...]) -> bool:
    remaining = iter(sequence)
    return all(step in remaining for step in steps)


def discover(clickhouse, project: str, **options) -> discovery.Discovery:
    async def run_records(queries):
        return {name: records(clickhouse, query) for name, query in queries.items()}

    return asyncio.run(discovery.discover(run_records, project, SINCE, UNTIL, **options))


@pytest.fixture(scope="module")
def untargeted(planted, clickhouse):
    return discover(clickhouse, planted[0])


@pytest.fixture(scope="module")
def targeted(planted, clickhouse):
    return discover(clickhouse, planted[0], target=TARGET, path_step="/landing")


def test_the_planted_funnel_is_the_first_three_step_candidate_and_every_count_is_exact(untargeted, planted):
    first_three = next(f for f in untargeted.funnels if len(f.steps) == 3)
    assert first_three.steps == FUNNEL
    assert first_three.worst_step == 3  # 60% go on to sign up, and half of those to the welcome page
    # noise pages visited in random order are done in either order: no funnel
    assert not any(set(f.steps) <= set(NOISE) for f in untargeted.funnels)
    assert [len(f.steps) for f in untargeted.funnels] == sorted((len(f.steps) for f in untargeted.funnels),
                                                              reverse=True)
    reference = sequences(planted[1])
    assert untargeted.sampled == len(reference)  # a small project: the sample is every session
    for funnel in untargeted.funnels:
        expected = tuple(sum(has_in_order(seq, funnel.steps[:k]) for seq in reference.values())
                         for k in range(1, len(funnel.steps) + 1))
        assert funnel.reached == expected, funnel.steps


def test_targeted_funnels_end_at_the_target(targeted):
    assert targeted.funnels and all(f.steps[-1] == TARGET for f in targeted.funnels)
    assert next(f for f in targeted.funnels if len(f.steps) == 2).steps == ("/pricing", TARGET)
    assert (*FUNNEL, TARGET) in [f.steps for f in targeted.funnels]


def test_the_planted_drivers_are_significant_and_the_nulls_are_not(targeted, planted):
    found = {(d.dimension, d.value): d for d in targeted.drivers.drivers}
    pricing, error, newsletter = found[("step", "/pricing")], found[("step", "/error")], \
        found[("utm_source", "newsletter")]
    assert pricing.significant and pricing.low > 1.8 and pricing.low < 3 < pricing.high
    assert error.significant and error.high < 0.8
    assert newsletter.significant and newsletter.low > 1.2
    significant = {key for key, d in found.items() if d.significant}
    planted_drivers = {("step", "/pricing"), ("step", "/error"), ("utm_source", "newsletter")}
    # the other campaigns do convert less than the rest, which holds the newsletter's visitors
    siblings = {("utm_source", "google"), ("utm_source", "twitter")}
    assert planted_drivers <= significant <= planted_drivers | siblings
    nulls = [("step", p) for p in (*NULL_PAGES, *FUNNEL, *NOISE)] + [("device", "Mobile"), ("browser", "Chrome")]
    assert all(key in found and not found[key].significant for key in nulls)
    assert {(d.dimension, d.value) for d in targeted.drivers.drivers[:3]} == planted_drivers


def test_driver_counts_match_the_events(targeted, planted):
    events = planted[1]
    converted_at = {e["anonymous_id"]: e["timestamp"] for e in events if e["event"] == TARGET}
    visitors = {e["anonymous_id"] for e in events}
    assert (targeted.drivers.visitors, targeted.drivers.converted) == (len(visitors), len(converted_at))
    saw_pricing = {e["anonymous_id"] for e in events if e["url_path"] == "/pricing"
                   and e["timestamp"] < converted_at.get(e["anonymous_id"], UNTIL)}
    pricing = next(d for d in targeted.drivers.drivers if (d.dimension, d.value) == ("step", "/pricing"))
    assert (pricing.visitors, pricing.converted) == (len(saw_pricing), len(saw_pricing & set(converted_at)))
    first_utm = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        first_utm.setdefault(e["anonymous_id"], e["utm_source"])
    newsletter = {v for v, utm in first_utm.items() if utm == "newsletter"}
    driver = next(d for d in targeted.drivers.drivers if (d.dimension, d.value) == ("utm_source", "newsletter"))
    assert (driver.visitors, driver.converted) == (len(newsletter), len(newsletter & set(converted_at)))


def test_paths_from_a_step_match_the_sessions(targeted, planted):
    reference = Counter()
    for seq in sequences(planted[1]).values():
        if "/landing" in seq:
            at = seq.index("/landing")
            path = seq[at:at + 5] + ([END] if len(seq) - at < 5 else [])
            for level in range(len(path) - 1):
                reference[(level, path[level], path[level + 1])] += 1
    nodes = {n["id"]: n for n in targeted.paths["nodes"]}
    drawn = Counter()
    for link in targeted.paths["links"]:
        source, target = nodes[link["source"]], nodes[link["target"]]
        assert target["offset"] == source["offset"] + 1
        drawn[(source["offset"], source["step"], target["step"])] += link["sessions"]
    named = {(n["offset"], n["step"]) for n in nodes.values() if n["step"] != OTHER}
    folded = Counter()
    for (level, source, target), n in reference.items():
        folded[(level, source if (level, source) in named else OTHER,
                target if (level + 1, target) in named else OTHER)] += n
    assert drawn == folded
    assert sum(n for (level, _s, _t), n in reference.items() if level == 0) == \
        sum(1 for seq in sequences(planted[1]).values() if "/landing" in seq)
    assert (0, "/landing") in named and (1, "/signup") in named


def test_mining_on_a_sample_finds_the_funnel_and_the_counts_stay_exact(planted, clickhouse):
    sampled = discover(clickhouse, planted[0], sample_events=5000)
    reference = sequences(planted[1])
    assert 0 < sampled.sampled < len(reference) / 3
    assert next(f for f in sampled.funnels if len(f.steps) == 3).steps == FUNNEL
    funnel = next(f for f in sampled.funnels if f.steps == FUNNEL)
    assert funnel.reached == tuple(sum(has_in_order(seq, FUNNEL[:k]) for seq in reference.values())
                                   for k in (1, 2, 3))


def test_a_filter_narrows_discovery(planted, clickhouse):
    mobile = discover(clickhouse, planted[0], filters=Filters(device="Mobile"), target=TARGET)
    events = [e for e in planted[1] if e["device"] == "Mobile"]
    assert mobile.drivers.visitors == len({e["anonymous_id"] for e in events})
    assert mobile.drivers.converted == sum(e["event"] == TARGET for e in events)


def headwater(stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwater", *args], env=stack.env, capture_output=True, text=True,
                          timeout=120)


def test_the_command_line_prints_what_discovery_found(stack, planted, untargeted, targeted):
    window = ["--project", planted[0], "--from", SINCE.isoformat(), "--to", UNTIL.isoformat()]
    funnels = headwater(stack, "discover", "funnels", *window, "--format", "json")
    assert funnels.returncode == 0, funnels.stderr[-2000:]
    assert json.loads(funnels.stdout)["funnels"] == [f.as_dict() for f in untargeted.funnels]
    drivers = headwater(stack, "discover", "drivers", *window, "--target", TARGET)
    assert drivers.returncode == 0, drivers.stderr[-2000:]
    first = drivers.stdout.splitlines()[2]
    top = targeted.drivers.drivers[0]
    assert first.startswith(f"{top.dimension} = {top.value}") and first.endswith("yes")
    paths = headwater(stack, "discover", "paths", "/landing", *window, "--format", "json")
    assert json.loads(paths.stdout) == targeted.paths
    sql = headwater(stack, "discover", "funnels", *window, "--target", TARGET, "--sql")
    assert sql.returncode == 0 and "-- mining\n" in sql.stdout and "hasSubsequence" not in sql.stdout
    refused = headwater(stack, "discover", "paths", "/landing", *window, "--depth", "40")
    assert refused.returncode != 0 and "depth must be" in refused.stderr and "Traceback" not in refused.stderr
    missing = headwater(stack, "discover", "funnels", "--project", "no_such_project")
    assert missing.returncode != 0 and "no project" in missing.stderr


def test_the_dashboards_queries_stop_at_their_time_limit(stack, planted):
    from clickhouse_driver.errors import ErrorCodes, ServerException

    from dashboard.runner import QueryRunner

    hurried = QueryRunner(dataclasses.replace(stack.settings, dashboard_query_timeout_s=0.001), connections=1)
    try:
        with pytest.raises(ServerException) as stopped:
            asyncio.run(hurried.records({"drivers": discovery.drivers_query(planted[0], TARGET, SINCE, UNTIL)}))
        assert stopped.value.code == ErrorCodes.TIMEOUT_EXCEEDED
    finally:
        hurried.close()
