"""The Stats API (dashboard/api.py) on the running dashboard, over the shop's events sent through the
whole pipeline: each view's blocks are the query library's rows, as JSON and as CSV; the page and the
API agree; tokens see what they may; bad parameters are refused with the reason; a token's rate limit
and the rows a query may read hold; the served document is the one in docs; Schemathesis finds no 5xx
and no answer the document does not describe."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from starlette.datastructures import QueryParams
from starlette.testclient import TestClient

from analytics import overview, queries, revenue
from analytics.goals import parse_goals
from analytics.run import records
from dashboard.api import VIEWS, view_queries
from dashboard.app import create_app
from dashboard.state import parse_state
from dashboard.stats_openapi import BLOCKS, openapi_document
from tests.helpers import Admin, wait_for
from tests.integration.test_collector_fuzz import generated
from tests.shop import AU, GB, SHOP_EVENTS, SHOP_GOALS, create_shop

pytestmark = pytest.mark.integration
SINCE, UNTIL = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
STATE = {"range": "custom", "from": "2026-03-02", "to": "2026-03-03"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "stats-api.json"


@pytest.fixture(scope="module")
def shop(stack, clickhouse):
    admin = Admin(stack.settings)
    created = create_shop(stack, clickhouse, admin, "api_shop")
    project = created["project"]["id"]
    read = admin.call("POST", f"/v1/projects/{project}/read-tokens")
    other = admin.create_project(prefix="api_other")["project"]["id"]
    other_read = admin.call("POST", f"/v1/projects/{other}/read-tokens")
    assert read.status_code == other_read.status_code == 201
    found = {"project": project, "token": read.json()["read_token"], "other_token": other_read.json()["read_token"]}
    # the dashboard learns of new tokens from the projects' topic: wait until it knows both
    wait_for(lambda: api(stack, f"{project}/overview/traffic", found["token"]).status_code == 200, 60)
    wait_for(lambda: api(stack, f"{other}/overview/traffic", found["other_token"]).status_code == 200, 60)
    return found


def api(stack, path: str, token: str | None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{stack.dashboard_url}/api/v1/projects/{path}", params={**STATE, **params}, headers=headers,
                     timeout=60)


def plain(rows: list[dict]) -> list[dict]:
    """Rows as the API's JSON holds them: dates and times as ISO text."""
    return [{k: v.isoformat() if isinstance(v, datetime | date) else v for k, v in row.items()} for row in rows]


def test_each_view_answers_the_query_librarys_rows(stack, clickhouse, shop):
    project, token = shop["project"], shop["token"]
    answer = api(stack, f"{project}/overview", token)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["view"], body["since"], body["until"]) == ("overview", SINCE.isoformat(), UNTIL.isoformat())
    blocks = body["blocks"]
    assert blocks["goals"] == plain(records(clickhouse, overview.goals(project, parse_goals(SHOP_GOALS), SINCE,
                                                                        UNTIL)))
    assert blocks["channels"] == plain(records(clickhouse, overview.sources(project, "channels", SINCE, UNTIL)))
    assert [r for r in blocks["traffic"] if r["current"]][0]["visitors"] == 3
    trends = api(stack, f"{project}/trends", token, series="Order Completed", metric="sum", of="properties.revenue",
                 interval="day").json()["blocks"]["series0"]
    assert trends == plain(records(clickhouse, queries.trends(project, SINCE, UNTIL, "Order Completed", "day",
                                                              metric="sum", of="properties.revenue")))
    assert [r["value"] for r in trends] == [69.5]
    funnel = api(stack, f"{project}/funnels/funnel", token, step=["/", "goal:Purchase"]).json()["blocks"]["funnel"]
    assert [r["visitors"] for r in funnel] == [3, 2]
    money = api(stack, f"{project}/revenue", token, interval="day").json()["blocks"]
    assert money["over_time"] == plain(records(clickhouse, revenue.over_time(project, SINCE, UNTIL, "day")))
    assert {(r["value"], r["currency"]): r["revenue"] for r in money["channels"]} == {
        ("Paid Search", "EUR"): 49.5, ("Email", "USD"): 20}


def test_a_block_as_csv(stack, clickhouse, shop):
    answer = api(stack, f"{shop['project']}/revenue/products", shop["token"], format="csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    expected = records(clickhouse, revenue.products(shop["project"], SINCE, UNTIL))
    assert [(r["product"], r["currency"], float(r["revenue"])) for r in rows] == \
        [(r["product"], r["currency"], r["revenue"]) for r in expected] == \
        [("Mug", "EUR", 25), ("Shirt", "EUR", 24.5), ("Shirt", "USD", 20)]


def test_the_page_shows_what_the_api_answers(stack, shop):
    answer = api(stack, f"{shop['project']}/overview/engagement", shop["token"]).json()["blocks"]["engagement"]
    page = httpx.get(f"{stack.dashboard_url}/p/{shop['project']}/overview", params=STATE,
                     headers={"Authorization": f"Bearer {shop['token']}"}).text
    sessions = next(r["sessions"] for r in answer if r["current"])
    assert f'data-metric="sessions" data-value="{sessions}"' in page


def test_tokens_see_what_they_may_and_bad_requests_say_why(stack, shop):
    project = shop["project"]
    assert api(stack, f"{project}/overview", None).status_code == 401
    assert api(stack, f"{project}/overview", "not-a-token").status_code == 401
    assert api(stack, f"{project}/overview", shop["other_token"]).status_code == 404
    assert api(stack, f"{project}/overview/traffic", stack.settings.admin_token).status_code == 200
    refusals = [(f"{project}/nope", {}, 404, "views:"), (f"{project}/overview/nope", {}, 404, "blocks here"),
                (f"{project}/overview", {"format": "csv"}, 400, "CSV holds one block"),
                (f"{project}/overview", {"goal": "Nope"}, 400, "no goal"),
                (f"{project}/trends", {"metric": "sum"}, 400, "numeric property"),
                (f"{project}/funnels", {"step": ["/", "goal:Nope"]}, 400, "no such goal"),
                (f"{project}/overview", {"where": "properties.x:gt:many"}, 400, "number"),
                (f"{project}/overview", {"range": "forever"}, 400, "range")]
    for path, params, status, reason in refusals:
        answer = api(stack, path, shop["token"], **params)
        assert answer.status_code == status and reason in answer.json()["message"], (path, params, answer.text)


def test_a_tokens_rate_limit_and_the_rows_a_query_may_read(stack, shop):
    strict = dataclasses.replace(stack.settings, stats_api_requests_per_minute=1, stats_api_burst=2,
                                 query_max_rows_to_read=5)
    with TestClient(create_app(None, strict)) as client:  # type: ignore[arg-type]  # no replays here
        headers = {"Authorization": f"Bearer {shop['token']}"}
        path = f"/api/v1/projects/{shop['project']}/overview/traffic"
        first = client.get(path, params=STATE, headers=headers)
        assert first.status_code == 422 and "more than 5 rows" in first.json()["message"]
        assert client.get(path, params=STATE, headers=headers).status_code == 422
        limited = client.get(path, params=STATE, headers=headers)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        admin = client.get(path, params=STATE, headers={"Authorization": f"Bearer {stack.settings.admin_token}"})
        assert admin.status_code == 422  # another token, another bucket


def test_the_served_document_is_the_one_in_docs_and_names_every_block(stack, shop):
    served = httpx.get(f"{stack.dashboard_url}/api/v1/openapi.json").json()
    assert served == openapi_document() == json.loads(DOCS.read_text())
    state = parse_state(QueryParams("step=/&step=/pricing&series=a&series=b&compare=previous")).resolve(
        shop["project"], [], SHOP_GOALS)
    for view in VIEWS:
        assert set(view_queries(view, shop["project"], state)) <= set(BLOCKS[view]), view


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(stack, shop, tmp_path):
    """The served document with the shop as the only project, so that the generated requests reach
    the queries; every check but positive_data_acceptance (a custom range needs from and to, which a
    schema of independent parameters cannot say)."""
    document = httpx.get(f"{stack.dashboard_url}/api/v1/openapi.json").json()
    for path in document["paths"].values():
        path["get"]["parameters"][0]["schema"] = {"type": "string", "enum": [shop["project"]]}
    # one block path per view, with that view's blocks: most (view, block) pairs are another view's
    # block (a 404 that stops Schemathesis short of the queries)
    block_path = document["paths"].pop("/api/v1/projects/{project}/{view}/{block}")
    for view, blocks in BLOCKS.items():
        path = json.loads(json.dumps(block_path))
        parameters = path["get"]["parameters"]
        parameters[:] = [p for p in parameters if p["name"] != "view"]
        next(p for p in parameters if p["name"] == "block")["schema"] = {"type": "string", "enum": list(blocks)}
        document["paths"][f"/api/v1/projects/{{project}}/{view}/{{block}}"] = path
    schema = tmp_path / "stats-api.json"
    schema.write_text(json.dumps(document))
    argv = [str(Path(sys.executable).with_name("schemathesis")), "run", str(schema), "--url", stack.dashboard_url,
            "-H", f"Authorization: Bearer {shop['token']}", "--max-examples", "60", "--seed", "1", "-w", "2",
            "--no-color", "--request-timeout", "30", "--checks", "all", "--exclude-checks",
            "positive_data_acceptance", "--phases", "examples,fuzzing"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    print(f"schemathesis: {generated(output)} cases on the Stats API")
    assert done.returncode == 0, output[-6000:]
    assert generated(output) > 200, output[-4000:]


COUNTRY = {GB: "GB", AU: "AU"}


def _by_visitor() -> dict[str, list[dict]]:
    """The shop's events per visitor (each visitor had one session)."""
    out: dict[str, list[dict]] = {}
    for event in SHOP_EVENTS:
        out.setdefault(event["anonymousId"], []).append(event)
    return out


def test_the_overview_and_the_sessions_break_down_by_any_property(stack, shop):
    project, token = shop["project"], shop["token"]
    plans: dict[str, dict] = {}
    for event in SHOP_EVENTS:  # the independent count: visitors and events per value of properties.plan
        counted = plans.setdefault(event["properties"].get("plan", ""), {"visitors": set(), "events": 0})
        counted["visitors"].add(event["anonymousId"])
        counted["events"] += 1
    expected = sorted(({"value": v, "visitors": len(c["visitors"]), "events": c["events"]} for v, c in plans.items()),
                      key=lambda r: (-r["visitors"], -r["events"], r["value"]))
    answer = api(stack, f"{project}/overview/breakdown", token, breakdown="properties.plan")
    assert answer.status_code == 200, answer.text
    assert answer.json()["blocks"]["breakdown"] == expected
    assert [r["value"] for r in expected] == ["", "free", "pro"]
    countries: dict[str, list] = {}
    for events in _by_visitor().values():
        first, last = events[0], events[-1]
        seconds = (datetime.fromisoformat(last["timestamp"]) - datetime.fromisoformat(first["timestamp"])).seconds
        pages = sum(e["type"] == "page" for e in events)
        countries.setdefault(COUNTRY[first["context"]["ip"]], []).append((seconds, pages))
    by = api(stack, f"{project}/sessions/by", token, breakdown="country").json()["blocks"]["by"]
    assert [(r["value"], r["sessions"], r["average_duration_s"], r["pageviews_per_session"]) for r in by] == [
        (country, len(found), sum(s for s, _ in found) / len(found), sum(p for _, p in found) / len(found))
        for country, found in sorted(countries.items(), key=lambda item: -len(item[1]))]
    assert [r["value"] for r in by] == ["GB", "AU"]
    first_paths: dict[str, int] = {}
    for events in _by_visitor().values():
        path = events[0]["properties"].get("path", "")
        first_paths[path] = first_paths.get(path, 0) + 1
    by_path = api(stack, f"{project}/sessions/by", token, breakdown="properties.path").json()["blocks"]["by"]
    assert [(r["value"], r["sessions"]) for r in by_path] == sorted(first_paths.items(), key=lambda i: -i[1])
    headers = {"Authorization": f"Bearer {token}"}
    overview_page = httpx.get(f"{stack.dashboard_url}/p/{project}/overview", headers=headers,
                              params={**STATE, "breakdown": "properties.plan"}).text
    shown = re.findall(r'<tr data-row="([^"]*)" data-count="(\d+)" data-events="(\d+)">', overview_page)
    assert shown == [(r["value"], str(r["visitors"]), str(r["events"])) for r in expected]
    assert "where=properties.plan%3Aeq%3Apro" in overview_page  # a row filters to its value
    sessions_page = httpx.get(f"{stack.dashboard_url}/p/{project}/sessions", headers=headers,
                              params={**STATE, "breakdown": "country"}).text
    assert re.findall(r'<tr data-row="([^"]*)" data-sessions="(\d+)"', sessions_page) == [
        (r["value"], str(r["sessions"])) for r in by]


def test_the_pages_charts_draw_the_apis_answer(stack, shop):
    """A chart's page names the Stats API request its script makes; the answer's chart is the lines of
    the events, every day of the range on the x axis."""
    project, headers = shop["project"], {"Authorization": f"Bearer {shop['token']}"}
    signups = {e["properties"]["plan"]: e["timestamp"][:10] for e in SHOP_EVENTS if e.get("event") == "Signed Up"}
    days = ["2026-03-02", "2026-03-03"]
    for view, params, block in (("trends", {"series": "Signed Up", "breakdown": "properties.plan"}, ""),
                                ("overview", {}, "/trend"), ("revenue", {}, "/over_time")):
        page = httpx.get(f"{stack.dashboard_url}/p/{project}/{view}", headers=headers,
                         params={**STATE, "interval": "day", **params})
        assert page.status_code == 200, page.text[-2000:]
        source = html.unescape(re.search(r'data-chart="trend" data-source="([^"]+)"', page.text).group(1))
        assert source.startswith(f"/api/v1/projects/{project}/{view}{block}?")
        answer = httpx.get(f"{stack.dashboard_url}{source}", headers=headers)
        assert answer.status_code == 200, answer.text
        chart = answer.json()["chart"]
        assert [datetime.fromtimestamp(t, UTC).date().isoformat() for t in chart["x"]] == days, view
        if view == "trends":
            assert {line["name"]: line["visitors"] for line in chart["cohorts"]} == {
                f"Signed Up · {plan}": [int(day == signed) for day in days] for plan, signed in signups.items()}
        elif view == "overview":
            assert chart["events"] == [sum(e["timestamp"].startswith(day) for e in SHOP_EVENTS) for day in days]
        else:
            assert {line["name"]: line["visitors"] for line in chart["cohorts"]} == {"EUR": [49.5, 0], "USD": [20, 0]}


def test_the_trends_page_says_beside_its_form_what_it_cannot_chart(stack, shop):
    page = httpx.get(f"{stack.dashboard_url}/p/{shop['project']}/trends", params={**STATE, "metric": "sum"},
                     headers={"Authorization": f"Bearer {shop['token']}"})
    assert page.status_code == 400
    assert "data-error>the sum metric needs a numeric property" in page.text and 'name="of"' in page.text
