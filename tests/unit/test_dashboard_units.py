"""The dashboard's URL state, its shaping of query results, and the Grafana SQL, without servers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from starlette.datastructures import QueryParams

from analytics import grafana, queries
from analytics.filters import FilterError, Filters
from dashboard import formatting, views
from dashboard.app import _safe_next
from dashboard.state import StateError, ViewState, parse_state


def test_state_round_trips_through_the_url():
    text = ("range=custom&from=2026-03-02&to=2026-03-03&tz=Europe%2FBerlin&country=DE&page=%2Fpricing"
            "&step=Viewed+Product&step=%2Fcheckout&window=3600&period=day&periods=4&count=ids")
    state = parse_state(QueryParams(text))
    assert state.filters == Filters(country="DE", page="/pricing", count_ids=True)
    assert state.steps == ("Viewed Product", "/checkout")
    assert parse_state(QueryParams(state.query_string()[1:])) == state
    since, until = state.bounds()
    assert since == datetime(2026, 3, 1, 23, tzinfo=UTC) and until == datetime(2026, 3, 3, 23, tzinfo=UTC)
    assert parse_state(QueryParams("")).query_string() == ""  # defaults stay out of the URL


@pytest.mark.parametrize("text, reason", [
    ("range=forever", "range must be one of"),
    ("range=custom&from=2026-03-02", "to must be a date"),
    ("range=custom&from=2026-03-05&to=2026-03-01", "to must not be before from"),
    ("tz=Mars/Base", "unknown time zone"),
    ("interval=fortnight", "interval must be one of"),
    ("window=-5", "window must be"),
    ("periods=0", "periods must be"),
    ("country=" + "x" * 1001, "at most 1000"),
    ("&".join(f"step=s{i}" for i in range(9)), "at most 8 steps"),
    ("count=households", "count must be persons or ids"),
])
def test_bad_state_says_why(text, reason):
    with pytest.raises(StateError, match=reason):
        parse_state(QueryParams(text))


def test_ranges_end_tomorrow_and_pick_their_trend_interval():
    now = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
    assert ViewState(range="7d").bounds(now) == (datetime(2026, 11, 16, tzinfo=UTC),
                                                 datetime(2026, 11, 23, tzinfo=UTC))
    assert ViewState(range="24h").bounds(now)[1] == datetime(2026, 11, 22, 15, 31, tzinfo=UTC)
    assert ViewState(range="today").trend_interval() == "hour" and ViewState(range="30d").trend_interval() == "day"


def test_filters_are_parameters_and_refuse_non_text():
    filters = Filters(country="DE", utm_campaign="spring", include_bots=True)
    assert filters.events_condition() == " AND country = %(filter_country)s AND utm_campaign = %(filter_utm_campaign)s"
    assert filters.params() == {"filter_country": "DE", "filter_utm_campaign": "spring"}
    assert "session_id IN" in Filters(page="/x").sessions_condition("p", "A", "B")
    with pytest.raises(FilterError):
        Filters(country=5)


def test_bots_are_left_out_unless_included():
    assert Filters().events_condition() == " AND NOT is_bot"
    assert " AND NOT is_bot" in Filters().sessions_condition("p", "A", "B")
    included = Filters.from_mapping({"bots": "include"})
    assert included.include_bots and included.events_condition() == ""
    assert included.active() == {"bots": "include"}
    for query in (queries.trends("p", datetime(2026, 1, 1, tzinfo=UTC),
                                 datetime(2026, 1, 2, tzinfo=UTC)),
                  queries.paths("p", "/x", datetime(2026, 1, 1, tzinfo=UTC),
                                datetime(2026, 1, 2, tzinfo=UTC))):
        assert "NOT is_bot" in query.sql


def test_funnel_steps_by_page_path_or_event_name():
    query = queries.funnel("p", ["/pricing", "Signed Up"], datetime(2026, 1, 1, tzinfo=UTC),
                           datetime(2026, 1, 2, tzinfo=UTC), 60)
    assert "(type = 'page' AND url_path = %(step1)s)" in query.sql and "event = %(step2)s" in query.sql
    assert query.params["step_pages"] == ("/pricing",) and query.params["step_events"] == ("Signed Up",)


def test_headline_compares_with_the_previous_period():
    traffic = [{"current": 0, "visitors": 4, "pageviews": 10, "events": 12},
               {"current": 1, "visitors": 6, "pageviews": 10, "events": 15}]
    figures = {f["key"]: f for f in views.headline(traffic, [])}
    assert figures["visitors"]["change"] == 0.5 and figures["pageviews"]["change"] == 0.0
    assert figures["sessions"]["value"] == 0 and figures["sessions"]["change"] is None
    assert formatting.change(0.5) == "+50%" and formatting.change(-0.25) == "−25%" and formatting.change(None) == "—"


def test_funnel_conversion_and_drop_off():
    rows = [{"step": 1, "visitors": 10}, {"step": 2, "visitors": 4}, {"step": 3, "visitors": 1}]
    steps = views.funnel_steps(rows)
    assert [s["conversion"] for s in steps] == [1.0, 0.4, 0.1]
    assert [(s["dropped"], s["drop_rate"]) for s in steps] == [(0, 0.0), (6, 0.6), (3, 0.75)]
    assert views.funnel_steps([]) == []


def test_cohort_grid_leaves_future_periods_blank():
    rows = [{"cohort": date(2026, 3, 2), "cohort_size": 4, "periods_later": 0, "visitors": 4},
            {"cohort": date(2026, 3, 2), "cohort_size": 4, "periods_later": 2, "visitors": 1}]
    (cohort,) = views.cohort_grid(rows, 3, "day", date(2026, 3, 4))
    assert [c and c["visitors"] for c in cohort["cells"]] == [4, 0, 1, None]


def test_the_trend_by_cohorts_has_a_line_per_cohort_with_zeros_where_none_of_its_members_came():
    day = [datetime(2026, 3, d, tzinfo=UTC) for d in (1, 2, 3)]
    rows = [{"period": day[0], "breakdown": "paying", "events": 5, "visitors": 2},
            {"period": day[0], "breakdown": "new", "events": 1, "visitors": 1},
            {"period": day[2], "breakdown": "paying", "events": 3, "visitors": 3}]
    chart = views.trend_series(rows, day[0], day[2], ("new", "paying", "churned"))
    assert chart["x"] == [int(day[0].timestamp()), int(day[2].timestamp())]
    assert chart["cohorts"] == [{"name": "new", "visitors": [1, 0]}, {"name": "paying", "visitors": [2, 3]},
                                {"name": "churned", "visitors": [0, 0]}]
    plain = views.trend_series([{**r, "breakdown": ""} for r in rows[:1]], day[0], day[2])
    assert (plain["events"], plain["visitors"], "cohorts" in plain) == ([5], [2], False)


def test_login_redirects_stay_on_this_site():
    assert _safe_next("/p/x/overview?range=30d") == "/p/x/overview?range=30d"
    for target in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)", "", None):
        assert _safe_next(target) == "/"


def test_grafana_sql_uses_the_plugin_macros():
    sql = grafana.grafana_sql(queries.top(grafana.PLACEHOLDER_PROJECT, "pages", datetime(2026, 1, 1, tzinfo=UTC),
                                          datetime(2026, 1, 2, tzinfo=UTC), limit=7))
    assert "timestamp >= $__fromTime_ms AND timestamp < $__toTime_ms" in sql
    assert "FROM hw_${project}.events FINAL" in sql and "LIMIT 7" in sql and "%(" not in sql
    assert grafana._literal("it's") == "'it\\'s'" and grafana._literal(("a", 1)) == "('a', 1)"


def test_sessions_are_never_signed_with_a_key_anyone_could_know():
    from dashboard.access import ADMIN, Sessions
    from headwater.projects.store import FixedProjects

    without_token = Sessions("", 3600)
    forged = Sessions("", 3600).serializer.dumps(ADMIN)  # another process, the same (empty) settings
    assert without_token.viewer(forged, FixedProjects()) is None
    own = without_token.serializer.dumps(ADMIN)
    assert without_token.viewer(own, FixedProjects()) is None  # no admin without an admin token
    with_token = Sessions("the-admin-token", 3600)
    assert with_token.viewer(with_token.cookie_for("the-admin-token", "the-admin-token"), FixedProjects()).admin
    assert with_token.viewer(Sessions("another-token", 3600).serializer.dumps(ADMIN), FixedProjects()) is None


def test_a_csv_cell_a_spreadsheet_would_run_stays_text():
    from dashboard.api import _cell

    assert _cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert [_cell(v) for v in ("@SUM(A1)", "-2+3", "Mug", -2.5, 7)] == ["'@SUM(A1)", "'-2+3", "Mug", -2.5, 7]


def test_a_views_chart_comes_from_its_chart_block_only():
    state = parse_state(QueryParams("range=custom&from=2026-03-02&to=2026-03-03&interval=day"))
    over_time = [{"period": date(2026, 3, 3), "currency": "EUR", "revenue": 5.0}]
    chart = views.chart("revenue", {"over_time": over_time, "products": []}, state)
    assert chart is not None and chart["cohorts"] == [{"name": "EUR", "visitors": [0, 5.0]}]
    assert [datetime.fromtimestamp(t, UTC).date() for t in chart["x"]] == [date(2026, 3, 2), date(2026, 3, 3)]
    assert views.chart("revenue", {"products": []}, state) is None  # one block, not the chart's
    assert views.chart("funnels", {"funnel": []}, state) is None  # a view without a chart
    assert views.chart("trends", {}, state) is None
    trend = views.chart("overview", {"trend": [{"period": date(2026, 3, 2), "breakdown": "", "events": 4,
                                                "visitors": 2}]}, state)
    assert trend is not None and (trend["events"], trend["visitors"]) == ([4], [2])


def test_a_breakdown_rows_link_adds_its_condition_to_the_state():
    state = parse_state(QueryParams("range=7d&breakdown=properties.plan"))
    linked = parse_state(QueryParams(state.with_condition("properties.plan", "pro: yearly")[1:]))
    assert [str(c) for c in linked.filters.where] == ["properties.plan:eq:pro: yearly"]
    assert linked.split == "properties.plan"
