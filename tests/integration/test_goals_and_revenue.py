"""Goals and revenue against ClickHouse, each figure checked against the same events computed in Python:
goals' conversions, rates and values (analytics/overview.py), a goal as a funnel step and as a filter,
revenue over time per currency, by the sessions' channel and campaign, and by product
(analytics/revenue.py)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from analytics import overview, queries, revenue
from analytics.filters import Filters
from analytics.goals import check_goals, parse_goals
from analytics.run import records
from bench.queries import DERIVE_SESSIONS
from headwater.clickhouse import project_database
from headwater.migrations import migrate_project

pytestmark = pytest.mark.integration
T0 = datetime(2026, 7, 1, tzinfo=UTC)
SINCE, UNTIL = T0, T0 + timedelta(days=3)
# (utm_source, utm_medium, utm_campaign) of a session, and its channel (analytics/channels.py)
CAMPAIGNS = [(("google", "cpc", "winter"), "Paid Search"), (("newsletter", "email", "news"), "Email"),
             (("", "", ""), "Direct")]
GOALS = [{"name": "Saw pricing", "page": "/pricing/*"},
         {"name": "Pro signup", "event": "Signed Up", "where": ["properties.plan:eq:pro"]},
         {"name": "Docs v2", "page": "/docs_v2/*"},
         {"name": "Bought", "event": "Order Completed"}]
PRODUCTS = [("p1", "Mug", 12.5), ("p2", "Shirt", 20.0), ("p3", "", 7.25)]


def _event(v: int, at: datetime, **fields) -> dict:
    return {"message_id": str(uuid.uuid4()), "type": "track", "event": "", "anonymous_id": f"v{v}",
            "session_id": f"v{v}-0", "timestamp": at, "url_path": "", "properties": "{}", **fields}


def generate(seed: int = 5) -> tuple[list[dict], dict[str, str]]:
    """The events, and each visitor's channel."""
    rng, events, channels = random.Random(seed), [], {}
    for v in range(300):
        at = T0 + timedelta(minutes=rng.randint(0, 3 * 24 * 60 - 120))
        (source, medium, campaign), channel = rng.choice(CAMPAIGNS)
        channels[f"v{v}"] = channel
        tags = {"utm_source": source, "utm_medium": medium, "utm_campaign": campaign}
        session = [_event(v, at, type="page", event="page", url_path="/landing", **tags)]
        for path in ("/pricing/pro", "/pricing_old", "/docs_v2/intro", "/docsXv2/intro"):
            if rng.random() < 0.3:
                session.append(_event(v, at + timedelta(minutes=len(session)), type="page", event="page",
                                       url_path=path, **tags))
        if rng.random() < 0.4:
            plan = rng.choice(["pro", "free"])
            session.append(_event(v, at + timedelta(minutes=len(session)), event="Signed Up", **tags,
                                  properties=json.dumps({"plan": plan})))
        for _ in range(rng.choice([0, 0, 1, 2])):
            items = [{"product_id": pid, "name": name, "price": price, "quantity": rng.randint(1, 3)}
                     for pid, name, price in rng.sample(PRODUCTS, rng.randint(1, 2))]
            properties = {"revenue": round(sum(i["price"] * i["quantity"] for i in items), 2), "products": items}
            if (currency := rng.choice(["eur", "USD", None])) is not None:
                properties["currency"] = currency
            session.append(_event(v, at + timedelta(minutes=len(session)), event="Order Completed", **tags,
                                  properties=json.dumps(properties)))
        events += session
    return events, channels


@pytest.fixture(scope="module")
def loaded(clickhouse):
    project = f"g_{uuid.uuid4().hex[:8]}"
    migrate_project(clickhouse, project)
    events, channels = generate()
    columns = list(events[0])
    clickhouse.execute(f"INSERT INTO {project_database(project)}.events ({', '.join(columns)}) VALUES",
                       [[e[c] for c in columns] for e in events])
    clickhouse.execute(DERIVE_SESSIONS.format(db=project_database(project)))
    yield project, events, channels
    clickhouse.execute(f"DROP DATABASE {project_database(project)} SYNC")


def _converts(goal: dict, e: dict) -> bool:
    """The reference: a goal tested on one event in Python."""
    if "page" in goal:
        prefix = goal["page"].rstrip("*")
        return e["type"] == "page" and e["url_path"].startswith(prefix)
    return e["event"] == goal["event"] and all(
        json.loads(e["properties"]).get("plan") == "pro" for _ in goal.get("where", []))


def _properties(e: dict) -> dict:
    return json.loads(e["properties"])


def test_goals_are_checked_with_reasons():
    assert check_goals(GOALS) == []
    problems = check_goals([{"name": "x", "page": "pricing"}, {"name": "y", "event": "A", "page": "/a"},
                            {"name": "z", "event": "A", "where": ["properties.p:bogus:1"]},
                            {"name": "w", "page": "/a", "where": []}, {"name": "x", "event": "B"}])
    assert any("starting with /" in p for p in problems)
    assert any("exactly one of page, event" in p for p in problems)
    assert any("bogus" in p for p in problems)
    assert any("where goes with an event goal" in p for p in problems)
    assert any("defined twice" in p for p in problems)


def test_each_goal_counts_what_python_counts(loaded, clickhouse):
    project, events, _ = loaded
    rows = {r["goal"]: r for r in records(clickhouse, overview.goals(project, parse_goals(GOALS), SINCE, UNTIL))}
    everyone = {e["anonymous_id"] for e in events}
    # pages a pattern read as LIKE without escaping would match: '_' is any one character there
    assert {"/docsXv2/intro", "/pricing_old"} <= {e["url_path"] for e in events}
    for goal in GOALS:
        hits = [e for e in events if _converts(goal, e)]
        converted = {e["anonymous_id"] for e in hits}
        assert hits, goal  # the data exercise every goal
        row = rows[goal["name"]]
        assert (row["visitors"], row["conversions"]) == (len(converted), len(hits)), goal
        assert row["conversion_rate"] == pytest.approx(len(converted) / len(everyone))
        worth = sum(_properties(e).get("revenue", 0) for e in hits)
        assert row["value"] == pytest.approx(worth), goal
        units = {_properties(e).get("currency", "").upper() for e in hits if "revenue" in _properties(e)}
        assert row["currencies"] == ",".join(sorted(units)), goal


def test_a_goal_is_a_funnel_step_and_a_filter(loaded, clickhouse):
    project, events, _ = loaded
    goals = parse_goals(GOALS)
    rows = records(clickhouse, queries.funnel(project, ["/landing", "goal:Pro signup"], SINCE, UNTIL, 86_400,
                                              goals=goals))
    pro = {e["anonymous_id"] for e in events if _converts(GOALS[1], e)}
    assert [r["visitors"] for r in rows] == [300, len(pro)]
    with pytest.raises(queries.QueryError, match="no such goal"):
        queries.funnel(project, ["/landing", "goal:Nope"], SINCE, UNTIL, 86_400, goals=goals)
    only = Filters(goal="Saw pricing").resolve(project, [], GOALS)
    trend = records(clickhouse, queries.trends(project, SINCE, UNTIL, filters=only))
    hits = [e for e in events if _converts(GOALS[0], e)]
    assert sum(r["events"] for r in trend) == len(hits)
    engaged = next(r for r in records(clickhouse, overview.engagement(project, SINCE, UNTIL, only)) if r["current"])
    assert engaged["sessions"] == len({e["session_id"] for e in hits})


def test_revenue_over_time_per_currency_matches_python(loaded, clickhouse):
    project, events, _ = loaded
    expected: dict = defaultdict(lambda: [0.0, 0, set()])
    for e in events:
        p = _properties(e)
        if "revenue" in p:
            cell = expected[(e["timestamp"].date(), p.get("currency", "").upper())]
            cell[0] += p["revenue"]
            cell[1] += 1
            cell[2].add(e["anonymous_id"])
    rows = records(clickhouse, revenue.over_time(project, SINCE, UNTIL, "day"))
    got = {(r["period"], r["currency"]): r for r in rows}
    assert set(got) == set(expected) and {c for _, c in got} == {"EUR", "USD", ""}
    for key, (amount, orders, payers) in expected.items():
        assert got[key]["revenue"] == pytest.approx(amount)
        assert (got[key]["orders"], got[key]["payers"]) == (orders, len(payers))
        assert got[key]["per_payer"] == pytest.approx(amount / len(payers))


def test_revenue_by_channel_campaign_and_product_matches_python(loaded, clickhouse):
    project, events, channels = loaded
    by_channel: dict = defaultdict(float)
    by_campaign: dict = defaultdict(float)
    by_product: dict = defaultdict(lambda: [0.0, 0])
    for e in events:
        p = _properties(e)
        if "revenue" in p:
            currency = p.get("currency", "").upper()
            by_channel[(channels[e["anonymous_id"]], currency)] += p["revenue"]
            by_campaign[(e["utm_campaign"] or "(none)", currency)] += p["revenue"]
            for item in p["products"]:
                cell = by_product[(item["name"] or item["product_id"], currency)]
                cell[0] += item["price"] * item["quantity"]
                cell[1] += item["quantity"]
    for what, expected in (("channels", by_channel), ("campaigns", by_campaign)):
        rows = records(clickhouse, revenue.by_source(project, what, SINCE, UNTIL, limit=100))
        assert {(r["value"], r["currency"]): pytest.approx(r["revenue"]) for r in rows} == expected, what
    rows = records(clickhouse, revenue.products(project, SINCE, UNTIL, limit=100))
    assert {(r["product"], r["currency"]): [pytest.approx(r["revenue"]), r["quantity"]] for r in rows} == \
        {k: [v[0], v[1]] for k, v in by_product.items()}


def test_the_command_line_shows_revenue_by_product_and_refuses_an_unknown_goal(stack, loaded):
    project, events, _ = loaded
    args = [sys.executable, "-m", "headwater", "query", "revenue", "--project", project, "--from", SINCE.isoformat(),
            "--to", UNTIL.isoformat(), "--format", "json"]
    shown = subprocess.run([*args, "--by", "products", "--limit", "100"], env=stack.env, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    quantities: dict = defaultdict(int)
    for e in events:
        for item in _properties(e).get("products", []):
            quantities[item["name"] or item["product_id"]] += item["quantity"]
    got: dict = defaultdict(int)
    for line in shown.stdout.splitlines():
        row = json.loads(line)
        got[row["product"]] += row["quantity"]
    assert got == quantities
    refused = subprocess.run([*args, "--goal", "Nope"], env=stack.env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "no goal 'Nope'" in refused.stderr and "Traceback" not in refused.stderr


def test_a_funnel_breaks_down_by_the_first_steps_column_or_property(loaded, clickhouse):
    project, events, _ = loaded
    by_visitor: dict = defaultdict(list)
    for e in sorted(events, key=lambda e: e["timestamp"]):
        by_visitor[e["anonymous_id"]].append(e)
    expected: dict = defaultdict(lambda: [0, 0])
    for visitor_events in by_visitor.values():
        signup = next((e for e in visitor_events if e["event"] == "Signed Up"), None)
        if signup is None:
            continue
        cell = expected[_properties(signup)["plan"]]
        cell[0] += 1
        cell[1] += any(e["event"] == "Order Completed" and e["timestamp"] >= signup["timestamp"]
                       for e in visitor_events)
    rows = records(clickhouse, queries.funnel(project, ["Signed Up", "Order Completed"], SINCE, UNTIL, 86_400,
                                              breakdown="properties.plan"))
    got: dict = defaultdict(lambda: [0, 0])
    for r in rows:
        got[r["breakdown"]][r["step"] - 1] = r["visitors"]
    assert got == expected and set(got) == {"pro", "free"}
    by_campaign = records(clickhouse, queries.funnel(project, ["/landing", "goal:Bought"], SINCE, UNTIL, 86_400,
                                                     breakdown="utm_campaign", breakdown_limit=2,
                                                     goals=parse_goals(GOALS)))
    first = {r["breakdown"]: r["visitors"] for r in by_campaign if r["step"] == 1}
    campaigns = [v[0]["utm_campaign"] for v in by_visitor.values()]
    counted = Counter(e["utm_campaign"] for e in events)  # the most frequent values among the range's events
    top = sorted(counted, key=lambda c: (-counted[c], c))[:2]
    assert sum(first.values()) == 300 and set(first) == {*top, "(other)"}
    assert first["(other)"] == sum(c not in top for c in campaigns)


def test_retention_breaks_down_by_the_first_cohort_events_value(loaded, clickhouse):
    project, events, _ = loaded
    first: dict = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        first.setdefault(e["anonymous_id"], e)
    expected: dict = defaultdict(lambda: defaultdict(int))
    for e in first.values():
        expected[e["utm_campaign"]][e["timestamp"].date()] += 1
    rows = records(clickhouse, queries.retention(project, SINCE, UNTIL, "day", 2, breakdown="utm_campaign"))
    got: dict = defaultdict(dict)
    for r in rows:
        if r["periods_later"] == 0:
            got[r["segment"]][r["cohort"]] = r["cohort_size"]
    assert got == {campaign: dict(days) for campaign, days in expected.items()} and len(got) == 3
