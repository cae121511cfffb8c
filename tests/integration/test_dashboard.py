"""The dashboard in a real browser (Debian's Chromium via playwright-core, dashboard/web/test/browser.mjs),
over known events sent through the whole pipeline: every page shows what the query library returns
and what the events imply; empty projects and bad ranges get a clear page; read tokens see only
their project and not the admin pages; the live page updates by itself; phone-sized screens do not
scroll sideways. Screenshots of each page land in a temporary directory (docs/screenshots holds a set
taken the same way from demo data)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from analytics import activity, discovery, overview, queries, revenue
from analytics.filters import Filters
from analytics.goals import parse_goals
from analytics.run import records
from headwater.migrations import migrate_project
from tests import planted
from tests.helpers import Admin, dashboard_session, post, wait_for
from tests.receivers import Receiver
from tests.shop import AU, DESKTOP, GB, PHONE, SHOP_GOALS, create_shop, page, track

pytestmark = pytest.mark.integration
WEB = Path(__file__).resolve().parents[2] / "dashboard" / "web"
SINCE = datetime(2026, 3, 2, tzinfo=UTC)
UNTIL = datetime(2026, 3, 4, tzinfo=UTC)  # the view's range: 2026-03-02 and 2026-03-03
STATE = "?range=custom&from=2026-03-02&to=2026-03-03"
STEPS = ["/", "/pricing", "Signed Up"]
# a: two visits (GB, desktop, from a campaign), signs up on the first; b: one visit (AU, phone);
# c: one page, a bounce (GB, phone); and one sign-up that fails its schema.
EVENTS = [
    page("a", "2026-03-02T10:00:00Z", "/", GB, DESKTOP, "?utm_source=news&utm_campaign=spring"),
    page("a", "2026-03-02T10:01:00Z", "/pricing", GB, DESKTOP),
    track("a", "2026-03-02T10:02:00Z", "Signed Up", GB, DESKTOP, {"plan": "pro"}),
    page("b", "2026-03-02T11:00:00Z", "/", AU, PHONE),
    page("b", "2026-03-02T11:05:00Z", "/pricing", AU, PHONE),
    page("a", "2026-03-03T09:00:00Z", "/", GB, DESKTOP),
    page("c", "2026-03-03T12:00:00Z", "/pricing", GB, PHONE),
]
BROKEN = track("e", "2026-03-03T13:00:00Z", "Signed Up", GB, DESKTOP, {"plan": 5})


def identify(visitor: str, at: str, user: str, ua: str, traits: dict) -> dict:
    return {"type": "identify", "anonymousId": visitor, "userId": user, "timestamp": at, "traits": traits,
            "messageId": str(uuid.uuid4()), "context": {"ip": GB, "userAgent": ua}}


# For the People pages, in a project of their own: alice signs up on a laptop on the first day and
# logs in on her phone on the second; bob browses once.
PEOPLE_EVENTS = [
    page("laptop", "2026-03-02T09:00:00Z", "/", GB, DESKTOP),
    identify("laptop", "2026-03-02T09:01:00Z", "alice", DESKTOP, {"email": "alice@example.com", "plan": "pro"}),
    page("bob", "2026-03-02T10:00:00Z", "/pricing", AU, DESKTOP),
    page("phone", "2026-03-03T08:00:00Z", "/", GB, PHONE),
    identify("phone", "2026-03-03T08:01:00Z", "alice", PHONE,
             {"plan": "team", "$set_once": {"first_plan": "free", "plan": "not set: plan has a value"}}),
]
SIGNUP_SCHEMA = {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}


@pytest.fixture(scope="module")
def loaded(stack, clickhouse):
    admin = Admin(stack.settings)
    created = admin.create_project(prefix="dash")
    project = created["project"]["id"]
    reply = admin.call("POST", f"/v1/projects/{project}/schemas",
                       {"event": "Signed Up", "version": "1-0-0", "schema": SIGNUP_SCHEMA})
    assert reply.status_code == 201, reply.text
    read = admin.call("POST", f"/v1/projects/{project}/read-tokens")
    assert read.status_code == 201, read.text
    empty = admin.create_project(prefix="dash_empty")["project"]["id"]
    key = created["keys"]["public_key"]
    reply = post(stack.collector_url, "/v1/batch", {"batch": [*EVENTS, BROKEN]}, key)
    assert reply.status_code == 200, reply.text
    db = f"hw_{project}"
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {db}.events")[0][0] == len(EVENTS), 60)
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {db}.failed_events")[0][0] == 1, 60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {db}.sessions")[0][0] == 4, 60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(events_in) FROM {db}.step_counts WHERE step = 'sessionize'")
             [0][0] == len(EVENTS), 60)
    people = admin.create_project(prefix="dash_people")
    reply = admin.call("PATCH", f"/v1/projects/{people['project']['id']}/config", {"cohorts": [
        {"name": "team-plan", "rules": [{"trait": "plan", "equals": "team"}]},
        {"name": "viewed-a-page", "rules": [{"did": "page", "within_days": 3650}]}]})
    assert reply.status_code == 200, reply.text
    reply = post(stack.collector_url, "/v1/batch", {"batch": PEOPLE_EVENTS}, people["keys"]["public_key"])
    assert reply.status_code == 200, reply.text
    people_db = people["project"]["database"]
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {people_db}.events")[0][0] == len(PEOPLE_EVENTS), 60)
    wait_for(lambda: clickhouse.execute(f"SELECT uniqExact(distinct_id) FROM {people_db}.person_ids")[0][0] == 3, 60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {people_db}.sessions")[0][0] == 3, 60)
    receiver = Receiver()
    receiver.start()
    alerting = admin.create_project(prefix="dash_alerts")
    reply = admin.call("PATCH", f"/v1/projects/{alerting['project']['id']}/config", {
        "alerts": {"rules": [{"name": "signup", "kind": "event", "when": {"event": "Signed Up"}},
                             {"name": "quiet-day", "kind": "threshold", "window_s": 3600, "below": 1}]},
        "destinations": [{"name": "ops", "type": "webhook", "source": "alerts", "settings": {"url": receiver.url},
                          "batch": {"max_events": 10, "max_ms": 100}}]})
    assert reply.status_code == 200, reply.text
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    reply = post(stack.collector_url, "/v1/batch", {"batch": [track("z", now, "Signed Up", GB, DESKTOP, {})]},
                 alerting["keys"]["public_key"])
    assert reply.status_code == 200, reply.text
    alerts_db = alerting["project"]["database"]
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {alerts_db}.alerts")[0][0] == 1, 60)
    shop = create_shop(stack, clickhouse, admin, "dash_shop")
    discovering = admin.create_project(prefix="dash_discover")["project"]["id"]
    migrate_project(clickhouse, discovering)  # (idempotent) the database exists before the first insert
    planted.insert(clickhouse, discovering, planted.generate())
    yield {"project": project, "empty": empty, "read_token": read.json()["read_token"], "write_key": key,
           "people": people["project"]["id"], "alerts": alerting["project"]["id"], "receiver": receiver,
           "discover": discovering, "shop": shop["project"]["id"]}
    receiver.stop()


@pytest.fixture(scope="module")
def shown(stack, loaded, tmp_path_factory):
    """What the browser saw on every page (see browser.mjs)."""
    shots = tmp_path_factory.mktemp("screenshots")
    env = {**os.environ, "DASHBOARD": stack.dashboard_url, "ADMIN_TOKEN": stack.settings.admin_token,
           "READ_TOKEN": loaded["read_token"], "PROJECT": loaded["project"], "EMPTY_PROJECT": loaded["empty"],
           "STATE": STATE, "STEPS": json.dumps(STEPS), "COLLECTOR": stack.collector_url,
           "WRITE_KEY": loaded["write_key"], "LIVE_ID": f"live-{uuid.uuid4()}", "NEW_FLOW": json.dumps(NEW_FLOW),
           "SCREENSHOTS": str(shots), "PEOPLE_PROJECT": loaded["people"], "ALERTS_PROJECT": loaded["alerts"],
           "DISCOVER_PROJECT": loaded["discover"], "DISCOVER_STATE": planted.STATE, "DISCOVER_TARGET": planted.TARGET,
           "DISCOVER_PATH": planted.FUNNEL[0], "SHOP_PROJECT": loaded["shop"]}
    done = subprocess.run(["node", "test/browser.mjs"], cwd=WEB, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {**json.loads(done.stdout), "shots": shots, "live_id": env["LIVE_ID"]}


NEW_FLOW = ["validate", "enrich", "anonymize", {"step": "transform", "name": "tidy", "do": [{"drop": "properties.debug"}]},
            "sessionize", {"step": "index", "when": {"not": {"field": "properties.test", "equals": True}}}]


def run(clickhouse, query) -> list[dict]:
    return records(clickhouse, query)


def test_overview_figures_are_the_events_and_the_query_results(shown, loaded, clickhouse):
    seen = shown["pages"]["overview"]
    assert seen["status"] == 200
    metrics = seen["metrics"]
    # from the events themselves: 3 visitors, 6 page views; sessions a1, a2, b, c; a2 and c bounce;
    # durations 120 + 0 + 300 + 0 seconds
    assert metrics["visitors"] == 3 and metrics["pageviews"] == 6
    assert metrics["sessions"] == 4 and metrics["bounce_rate"] == 0.5 and metrics["average_duration_s"] == 105
    traffic = next(r for r in run(clickhouse, overview.traffic(loaded["project"], SINCE, UNTIL)) if r["current"])
    engagement = next(r for r in run(clickhouse, overview.engagement(loaded["project"], SINCE, UNTIL)) if r["current"])
    assert (metrics["visitors"], metrics["pageviews"]) == (traffic["visitors"], traffic["pageviews"])
    assert metrics["sessions"] == engagement["sessions"]
    assert metrics["average_duration_s"] == pytest.approx(engagement["average_duration_s"])


def test_the_trends_page_shows_each_series_its_previous_period_and_a_property_breakdown(shown, loaded, clickhouse):
    seen = shown["pages"]["trends"]
    assert seen["status"] == 200
    span = UNTIL - SINCE
    expected = {}
    for series in ("/", "/pricing"):
        for name, since, until in ((series, SINCE, UNTIL), (f"{series} (previous period)", SINCE - span, SINCE)):
            rows = run(clickhouse, queries.trends(loaded["project"], since, until, series, "hour", metric="persons"))
            expected[name] = sum(r["value"] for r in rows)
    compared = seen["compared"]
    assert {name: sum(values) for name, values in compared["lines"].items()} == {
        name: total for name, total in expected.items() if total or "previous" not in name}
    assert expected["/"] == 3 and expected["/pricing"] == 3  # one person in each of three hours
    assert compared["drawn"] == len(compared["lines"])
    filtered = seen["filtered"]
    assert "where=properties.plan%3Aeq%3Apro" in filtered["url"] and "breakdown=properties.plan" in filtered["url"]
    assert filtered["chips"] == ["properties.plan:eq:pro"]
    assert filtered["lines"] == {"Signed Up · pro": [1]}


def test_the_discover_page_shows_what_discovery_finds(shown, loaded, clickhouse):
    seen = shown["pages"]["discover"]
    assert seen["status"] == 200

    async def run_records(named):
        return {name: records(clickhouse, query) for name, query in named.items()}

    found = asyncio.run(discovery.discover(run_records, loaded["discover"], planted.SINCE, planted.UNTIL,
                                           target=planted.TARGET, path_step=planted.FUNNEL[0]))
    assert seen["funnels"] == [{"steps": " → ".join(f.steps), "reached": list(f.reached)} for f in found.funnels]
    assert seen["drivers"][:3] == [{"driver": f"{d.dimension}={d.value}", "significant": True, "lift": str(d.lift)}
                                   for d in found.drivers.drivers[:3]]
    assert {d["driver"] for d in seen["drivers"] if d["significant"]} >= {"step=/pricing", "step=/error"}
    diagram = seen["diagram"]
    assert diagram["nodes"] == diagram["rects"] == len(found.paths["nodes"])
    assert diagram["links"] == diagram["paths"] == len(found.paths["links"])
    assert planted.FUNNEL[0] in diagram["labels"] and planted.FUNNEL[1] in diagram["labels"]
    assert seen["opened"]["url"].count("step=") == len(found.funnels[0].steps) == seen["opened"]["steps"]


def test_goals_show_on_the_overview_filter_it_and_are_funnel_steps(shown, loaded, clickhouse):
    seen = shown["pages"]["shop"]
    assert seen["status"] == 200
    expected = run(clickhouse, overview.goals(loaded["shop"], parse_goals(SHOP_GOALS), SINCE, UNTIL))
    assert seen["goals"] == [[r["goal"], r["visitors"], r["conversion_rate"], r["currencies"]] for r in expected]
    # from the events: s1 and s3 saw pricing, s1 signed up for pro, s1 and s2 bought (in EUR and USD)
    assert seen["goals"] == [["Saw pricing", 2, 2 / 3, ""], ["Pro signup", 1, 1 / 3, ""],
                             ["Purchase", 2, 2 / 3, "EUR,USD"]]
    assert seen["channels"] == [["Direct", 1], ["Email", 1], ["Paid Search", 1]]
    filtered = seen["filtered"]
    assert "goal=Pro+signup" in filtered["url"] and filtered["chips"] == ["goal"]
    assert filtered["visitors"] == 1 and filtered["channels"] == [["Paid Search", 1]]
    assert seen["funnel"] == [[1, 3], [2, 1]]  # everyone saw /, one signed up for pro


def test_the_revenue_page_shows_revenue_per_currency_by_channel_and_product(shown, loaded, clickhouse):
    seen = shown["pages"]["shop"]["revenue"]
    assert seen["status"] == 200 and seen["drawn"] == 2  # a line per currency
    assert seen["over_time"] == [["2026-03-02", "EUR", 49.5], ["2026-03-02", "USD", 20]]
    expected = run(clickhouse, revenue.over_time(loaded["shop"], SINCE, UNTIL, "hour"))
    assert sorted((r["currency"], r["revenue"]) for r in expected) == [("EUR", 49.5), ("USD", 20)]
    assert seen["channels"] == [["Paid Search", "EUR", 49.5], ["Email", "USD", 20]]
    assert seen["products"] == [["Mug", "EUR", 25], ["Shirt", "EUR", 24.5], ["Shirt", "USD", 20]]


def test_the_trend_axis_spans_the_views_range(shown):
    """With its data in one period, uPlot's own range stretches the axis over years."""
    axis = shown["pages"]["overview"]["axis"]
    assert axis["range"] == [SINCE.timestamp(), UNTIL.timestamp()]
    assert axis["shown"] == axis["range"]


def test_overview_lists_are_the_query_results(shown, loaded, clickhouse):
    blocks = shown["pages"]["overview"]["blocks"]
    assert blocks["pages"] == [["/pricing", 3], ["/", 2]]
    assert blocks["entry_pages"] == [["/", 3], ["/pricing", 1]]
    assert blocks["exit_pages"] == [["/pricing", 3], ["/", 1]]
    assert blocks["campaigns"] == [["spring", 1]]
    assert blocks["countries"] == [["GB", 2], ["AU", 1]]
    for block in ("browsers", "os", "devices"):
        expected = run(clickhouse, overview.sources(loaded["project"], block, SINCE, UNTIL))
        assert blocks[block] == [[r["value"], r["visitors"]] for r in expected] and expected
    # by the sessions' first events: b's and c's iPhones, a's desktop (ua-parser's device family "Other")
    assert blocks["devices"] == [["iPhone", 2], ["Other", 1]]


def test_funnel_and_retention_are_the_query_results(shown, loaded, clickhouse):
    funnel = shown["pages"]["funnels"]["rows"]
    assert [(r["step"], r["visitors"]) for r in funnel] == [(1, 2), (2, 2), (3, 1)]
    expected = run(clickhouse, queries.funnel(loaded["project"], STEPS, SINCE, UNTIL, 86400))
    assert [r["visitors"] for r in funnel] == [r["visitors"] for r in expected]
    cohorts = {c["cohort"]: c for c in shown["pages"]["retention"]["cohorts"]}
    assert cohorts["2026-03-02"]["size"] == 2 and cohorts["2026-03-02"]["cells"][:2] == [[0, 2], [1, 1]]
    assert cohorts["2026-03-03"]["size"] == 1 and cohorts["2026-03-03"]["cells"] == [[0, 1]]  # later days: not yet


def test_sessions_and_a_timeline(shown, loaded, clickhouse):
    seen = shown["pages"]["sessions"]
    expected = run(clickhouse, activity.recent_sessions(loaded["project"], SINCE, UNTIL))
    assert [(s["id"], s["events"]) for s in seen["list"]] == [(r["session_id"], r["events"]) for r in expected]
    assert sorted(s["events"] for s in seen["list"]) == [1, 1, 2, 3]
    assert seen["fresh"] == [3, 1]  # a's second visit came back; a's first, b's and c's were first sessions
    events = clickhouse.execute(f"SELECT event FROM hw_{loaded['project']}.events WHERE session_id = %(s)s "
                                "ORDER BY timestamp", {"s": seen["first"]})
    assert seen["timeline"] == [e for (e,) in events] and seen["timeline"]


def test_failed_events_with_samples(shown, loaded, clickhouse):
    seen = shown["pages"]["failed"]
    now = datetime.now(UTC)
    reasons = run(clickhouse, activity.failure_reasons(loaded["project"], now - timedelta(days=1), now))
    assert seen["reasons"] == [[r["reason"], r["failed"]] for r in reasons] and sum(c for _, c in seen["reasons"]) == 1
    assert seen["samples"] == [BROKEN["messageId"]]


def test_the_flow_page_draws_the_flow_and_the_catalogue_and_saves_a_checked_flow(shown, loaded, stack):
    seen = shown["pages"]["flow"]
    assert seen["status"] == 200
    assert [(s["name"], s["when"]) for s in seen["steps"]] == [("mediator", "every event the collector took")] + [
        (step, "every event") for step in ("validate", "enrich", "anonymize", "sessionize", "index")]
    # events a minute over the last hour (x 60 here: events). The steps count when they run, so the
    # March events count; the live page's event may not be counted yet (it is stored by its own time)
    steps = {s["name"]: s for s in seen["steps"]}
    assert steps["mediator"]["eventsIn"] in (pytest.approx(len(EVENTS) + 1), pytest.approx(len(EVENTS) + 2))
    assert steps["validate"]["deadLettered"] == pytest.approx(1)  # the broken sign-up
    assert steps["sessionize"]["eventsIn"] in (pytest.approx(len(EVENTS)), pytest.approx(len(EVENTS) + 1))
    for name in ("mediator", "validate", "enrich", "anonymize", "sessionize"):
        s = steps[name]
        assert s["eventsIn"] == pytest.approx(s["eventsOut"] + s["dropped"] + s["deadLettered"]) and s["stored"] is None
    # index: of the last hour's events the live page's one was stored (the others are dated March)
    assert (steps["index"]["stored"], steps["index"]["deadLettered"], steps["index"]["eventsIn"]) == (
        pytest.approx(1), 0, None)
    assert all(isinstance(s["lag"], int) and s["lag"] >= 0 for s in seen["steps"])  # measured at the broker
    catalogue = {(e["event"], e["type"]): e for e in seen["catalogue"]}
    assert set(catalogue) == {("page", "page"), ("Signed Up", "track")}  # the broken sign-up was not stored
    assert (catalogue[("page", "page")]["count"], sorted(catalogue[("page", "page")]["properties"])) == (6, ["path", "url"])
    assert catalogue[("Signed Up", "track")] == {"event": "Signed Up", "type": "track", "count": 1, "schemas": "1-0-0",
                                                 "properties": ["plan"]}
    assert "step 1 (index) when.type: unknown type 'click'" in seen["refused"] and seen["kept_draft"]
    assert seen["saved"] == ["mediator", "validate", "enrich", "anonymize", "transform:tidy", "sessionize", "index"]
    assert seen["saved_when"][-1] == 'when {"not": {"equals": true, "field": "properties.test"}}'
    stored = Admin(stack.settings).call("GET", f"/v1/projects/{loaded['project']}").json()["project"]["flow"]
    assert stored == NEW_FLOW


def test_every_block_opens_its_sql(shown, loaded):
    sql = shown["pages"]["sql"]["text"]
    assert f"FROM hw_{loaded['project']}.events FINAL" in sql and "'2026-03-02 00:00:00.000'" in sql


def test_live_page_updates_by_itself(shown):
    live = shown["pages"]["live"]
    assert live["status"] == 200 and live["sent"] == 200 and live["refreshes"] >= 1


def test_empty_projects_and_bad_ranges(shown):
    empty = shown["empty"]
    for view in ("overview", "funnels", "retention", "live", "sessions", "failed"):
        assert empty[view]["status"] == 200 and empty[view]["empty"] >= 1, view
    assert empty["bad_range"] == {"status": 400, "message": "to must not be before from"}
    assert shown["errors"] == []


def test_phone_sized_screens_do_not_scroll_sideways(shown):
    phone = shown["phone"]
    assert all(width <= phone["viewport"] for width in phone["widths"].values()), phone


def test_access_by_login_and_read_token(shown):
    assert shown["session_cookie_holds_token"] is False  # a signed session, not the token itself
    access = shown["access"]
    assert access["anonymous_lands_on"] == "/login"
    assert "opens nothing" in access["wrong_token_error"]
    assert access["read_token_lands_on"].endswith("/overview")
    assert access["read_token_failed_status"] == 403
    assert access["read_token_other_project_status"] == 404
    assert "Failed events" not in access["read_token_nav"] and "Overview" in access["read_token_nav"]


def test_a_screenshot_of_every_page(shown):
    names = {p.name for p in shown["shots"].iterdir() if p.stat().st_size > 5000}
    assert {"overview.png", "overview-phone.png", "overview-empty.png", "funnels.png", "retention.png", "live.png",
            "sessions.png", "session-timeline.png", "people.png", "person.png", "failed-events.png", "flow.png"} <= names


def test_filters_combine(stack, loaded):
    cookies = dashboard_session(stack.dashboard_url, stack.settings.admin_token)
    url = f"{stack.dashboard_url}/p/{loaded['project']}/overview{STATE}"
    gb = httpx.get(url + "&country=GB", cookies=cookies).text
    assert 'data-metric="visitors" data-value="2"' in gb and 'data-metric="pageviews" data-value="4"' in gb
    both = httpx.get(url + "&country=GB&page=/pricing", cookies=cookies).text
    assert 'data-metric="visitors" data-value="2"' in both and 'data-metric="pageviews" data-value="2"' in both
    campaign = httpx.get(url + "&utm_campaign=spring", cookies=cookies).text
    assert 'data-metric="visitors" data-value="1"' in campaign and 'data-metric="sessions" data-value="1"' in campaign


def test_replay_button_and_its_guards(stack, loaded):
    base = f"{stack.dashboard_url}/p/{loaded['project']}/failed/replay{STATE}"
    admin = dashboard_session(stack.dashboard_url, stack.settings.admin_token)
    foreign = httpx.post(base, cookies=admin, headers={"Origin": "https://evil.example"}, data={"reason": ""})
    assert foreign.status_code == 403
    no_origin = httpx.post(base, cookies=admin, data={"reason": ""})
    assert no_origin.status_code == 403
    reader = httpx.post(base, cookies=dashboard_session(stack.dashboard_url, loaded["read_token"]),
                        headers={"Origin": stack.dashboard_url}, data={"reason": ""})
    assert reader.status_code == 403
    replayed = httpx.post(base, cookies=admin, headers={"Origin": stack.dashboard_url}, data={"reason": ""},
                          timeout=150)
    assert replayed.status_code == 200
    # the event still breaks the schema: the replay finds it and stops there, as `headwater replay` does
    assert 'data-matched="1"' in replayed.text and 'data-replayed="0"' in replayed.text
    assert "stopped at" in replayed.text


def test_the_flow_page_refuses_a_foreign_post_a_reader_and_a_document_nested_too_deeply(stack, loaded):
    url = f"{stack.dashboard_url}/p/{loaded['project']}/flow"
    admin = dashboard_session(stack.dashboard_url, stack.settings.admin_token)
    foreign = httpx.post(url, cookies=admin, headers={"Origin": "https://evil.example"}, data={"flow": "[]"})
    reader = httpx.post(url, cookies=dashboard_session(stack.dashboard_url, loaded["read_token"]),
                        headers={"Origin": stack.dashboard_url}, data={"flow": "[]"})
    deep = httpx.post(url, cookies=admin, headers={"Origin": stack.dashboard_url},
                      data={"flow": "[" * 5000 + "]" * 5000}, timeout=30)
    assert (foreign.status_code, reader.status_code, deep.status_code) == (403, 403, 400)
    assert "nested too deeply" in deep.text


def test_read_tokens_never_write(stack, loaded):
    reply = post(stack.collector_url, "/v1/track", {"event": "x", "anonymousId": "v"}, loaded["read_token"])
    assert reply.status_code == 401


def test_json_and_bearer_access(stack, loaded):
    url = f"{stack.dashboard_url}/p/{loaded['project']}/live.json"
    assert httpx.get(url).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {loaded['read_token']}"})
    assert ok.status_code == 200 and "latest" in ok.json()
    other = httpx.get(f"{stack.dashboard_url}/p/{loaded['empty']}/live.json",
                      headers={"Authorization": f"Bearer {loaded['read_token']}"})
    assert other.status_code == 404 and other.json()["error"] == "No such project"


def test_filter_values_are_parameters_not_sql(loaded, clickhouse):
    hostile = Filters(country="GB' OR 1=1 --")
    rows = run(clickhouse, overview.traffic(loaded["project"], SINCE, UNTIL, hostile))
    assert [r for r in rows if r["current"]] == []


GRAFANA_FILE = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "headwater.json"


def expand_like_the_plugin(sql: str, project: str, since: datetime, until: datetime) -> str:
    """What grafana-clickhouse-datasource sends for a panel: its macros and the variables filled in."""
    start, end = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    return (sql.replace("$__fromTime_ms", f"fromUnixTimestamp64Milli({start})")
            .replace("$__toTime_ms", f"fromUnixTimestamp64Milli({end})")
            .replace("$__from", str(start)).replace("$__to", str(end)).replace("${project}", project))


def test_grafana_dashboard_json_is_valid_and_runs_the_same_sql(loaded, clickhouse):
    board = json.loads(GRAFANA_FILE.read_text())
    assert board["uid"] == "headwater-overview" and board["schemaVersion"] >= 36
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "project"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    project = loaded["project"]
    results = {}
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        (target,) = panel["targets"]
        assert target["datasource"]["type"] == "grafana-clickhouse-datasource" and target["editorType"] == "sql"
        assert "%(" not in target["rawSql"] and "${project}" in target["rawSql"]
        results[panel["title"]] = clickhouse.execute(expand_like_the_plugin(target["rawSql"], project, SINCE, UNTIL))
    # the project variable lists the project
    variable = next(v for v in board["templating"]["list"] if v["name"] == "project")
    assert (project,) in clickhouse.execute(variable["query"])
    # the same figures as the query library (and so as the dashboard)
    traffic = run(clickhouse, overview.traffic(project, SINCE, UNTIL))
    assert results[board["panels"][0]["title"]] == [tuple(r.values()) for r in traffic]
    pages = run(clickhouse, queries.top(project, "pages", SINCE, UNTIL))
    assert results["Top pages"] == [tuple(r.values()) for r in pages] and pages
    assert sum(row[2] for row in results["Events and visitors by hour"]) == len(EVENTS)


def test_the_people_pages_show_one_person_across_two_devices(shown):
    seen = shown["pages"]["people"]
    assert seen["status"] == 200
    assert seen["list"] == [{"person": "alice", "ids": 2, "events": 4}, {"person": "bob", "ids": 1, "events": 1}]
    assert seen["count_ids"] == ["phone", "bob", "laptop"]  # the Count menu set to ids: one row per id
    assert seen["search"] == ["alice"]  # an email her first identify set, no longer her latest traits
    person = seen["person"]
    assert person["status"] == 200 and person["person"] == "alice"
    assert person["ids"] == ["alice", "laptop", "phone"]
    assert person["traits"] == {"email": "alice@example.com", "plan": "team", "first_plan": "free"}
    assert sorted(person["devices"]) == ["Other", "iPhone"] and person["sessions"] == "2"
    assert sorted(person["timeline"]) == ["laptop", "laptop", "phone", "phone"]
    assert person["by_device_id"] == "alice"  # the page of a device's id is its person's
    # cohorts: alice's latest plan is team (as a person; by ids, only her phone's identify said so)
    assert seen["cohorts"] == {"team-plan": 1, "viewed-a-page": 2}
    assert seen["cohort_overview"] == {"visitors": 1, "pageviews": 2, "chip": "cohort: team-plan ×"}
    assert seen["unknown_cohort"] == 400
    trend = seen["trend_by_cohort"]  # the overview's checkbox: a line per cohort in its trend chart
    assert (trend["by"], trend["series"], trend["lines"]) == ("cohorts", "team-plan,viewed-a-page", 2)
    assert trend["heading"].startswith("Visitors of each saved cohort by")
    # a funnel and a retention grid per cohort: alice in both, bob (only /pricing) in viewed-a-page
    assert seen["funnels_by_cohort"] == {"team-plan": [1, 0], "viewed-a-page": [1, 0]}
    assert seen["retention_by_cohort"] == {"team-plan": [["2026-03-02", 1, [1, 1]]],
                                           "viewed-a-page": [["2026-03-02", 2, [2, 1]]]}


def test_the_tags_page_creates_saves_publishes_rolls_back_and_previews_a_container(shown, loaded, stack):
    seen = shown["pages"]["tags"]
    assert seen["status"] == 200 and seen["created"] == ["web"] and seen["serves_at_first"] == "nothing"
    assert seen["saved"].startswith("Draft saved") and seen["published"].startswith("Version 1 is published")
    assert seen["custom_code"].startswith("Custom code: chat runs code of its own")
    assert seen["rolled_back"] == "Version 1 is served again." and seen["serves"] == "version 1"
    assert seen["versions"] == ["2", "1"]
    assert "?hw_tm_preview=" in seen["preview"]
    assert "tags.x.kind: Invalid enum value 'hunch'" in seen["refused"] and seen["kept_draft"]
    served = httpx.get(f"{stack.collector_url}/tm/{loaded['alerts']}/web.js")
    assert served.status_code == 200 and "https://pixel.test/first" in served.text and "window.chat" not in served.text


def test_the_alerts_page_lists_rules_alerts_and_channels_and_sends_a_test(shown, loaded):
    seen = shown["pages"]["alerts"]
    assert seen["status"] == 200
    assert seen["rules"] == [{"rule": "signup", "kind": "event", "alerts": 1},
                             {"rule": "quiet-day", "kind": "threshold", "alerts": 0}]
    assert seen["recent"] == ["signup"] and seen["channels"] == ["ops"]
    assert seen["tested"].startswith("signup: a test alert is on its way to the channels (alert_")
    tested = seen["tested"].rsplit("(", 1)[1].rstrip(")")
    wait_for(lambda: any(e["messageId"] == tested and e["properties"]["test"]
                         for e in loaded["receiver"].delivered(loaded["alerts"])), 60)
    assert "alerts.rules[0] (x).kind must be one of event, visitor, threshold" in seen["refused"]
