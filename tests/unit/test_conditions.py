"""Conditions on any property: parsing, the refusals with their reasons, and the URL round trip."""

from __future__ import annotations

import pytest
from starlette.datastructures import QueryParams

from analytics.conditions import Condition, ConditionError, parse
from analytics.filters import Filters
from dashboard.state import StateError, parse_state


@pytest.mark.parametrize("text, expected", [
    ("properties.plan:eq:pro", Condition("properties.plan", "eq", "pro")),
    ("properties.order.total:gte:10.5", Condition("properties.order.total", "gte", "10.5")),
    ("url_path:regex:^/docs/(a|b):c", Condition("url_path", "regex", "^/docs/(a|b):c")),  # a value may hold ':'
    ("properties.coupon:set", Condition("properties.coupon", "set", "")),
    ("browser:in:Chrome, Firefox", Condition("browser", "in", "Chrome, Firefox")),
])
def test_conditions_parse(text, expected):
    assert parse(text) == expected
    assert parse(str(expected)) == expected


@pytest.mark.parametrize("text, reason", [
    ("plan:eq:pro", "a key is properties.NAME or one of"),
    ("properties.:eq:x", "non-empty levels"),
    ("properties.a.b.c.d.e.f:eq:x", "1 to 5"),
    ("properties.plan:like:pro", "operator must be one of"),
    ("browser:gt:3", "properties only"),
    ("properties.total:gt:lots", "needs a number"),
    ("properties.total:lt:nan", "needs a number"),
    ("properties.plan:set:yes", "takes no value"),
    ("properties.plan:regex:(unclosed", "not a valid RE2"),
    ("properties.plan:in:" + ",".join(["x"] * 101), "at most 100 values"),
    ("properties.plan:eq:" + "x" * 1001, "at most 1000"),
])
def test_bad_conditions_are_refused_with_the_reason(text, reason):
    with pytest.raises(ConditionError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse(text)


def test_values_and_keys_are_parameters_never_sql():
    sql, params = Condition("properties.it's", "eq", "'; DROP TABLE events; --").sql("w0")
    assert "DROP" not in sql and "it's" not in sql
    assert params == {"w0_k0": "it's", "w0_needle": '"it\'s"', "w0_v": "'; DROP TABLE events; --"}


def test_the_url_keeps_each_condition_and_refuses_a_bad_one():
    state = parse_state(QueryParams("where=properties.plan:eq:pro&where=properties.seats:gt:5&where="))
    assert state.filters.where == (Condition("properties.plan", "eq", "pro"), Condition("properties.seats", "gt", "5"))
    assert state.params()["where"] == ["properties.plan:eq:pro", "properties.seats:gt:5"]
    assert parse_state(QueryParams(state.query_string()[1:])) == state
    assert "where=properties.seats" in state.without_condition(0) and "plan" not in state.without_condition(0)
    with pytest.raises(StateError, match="operator must be one of"):
        parse_state(QueryParams("where=properties.plan:like:x"))
    with pytest.raises(StateError, match="at most 10 conditions"):
        parse_state(QueryParams("&".join(["where=properties.a:set"] * 11)))
    assert Filters(where=(Condition("properties.a", "set"),))  # a condition alone makes the filters active


def test_the_trends_state_round_trips_and_refuses_bad_values():
    state = parse_state(QueryParams("series=Signed Up&series=/pricing&metric=sum&of=properties.revenue"
                                    "&breakdown=properties.plan&compare=previous"))
    assert (state.series, state.metric, state.of, state.split, state.compare) == (
        ("Signed Up", "/pricing"), "sum", "properties.revenue", "properties.plan", True)
    assert parse_state(QueryParams(state.query_string()[1:])) == state
    for bad, reason in (("metric=mode", "metric must be one of"), ("of=revenue", "a key is properties.NAME"),
                        ("breakdown=properties.", "non-empty levels"), ("compare=yes", "compare must be previous"),
                        ("&".join(["series=a"] * 6), "at most 5 series")):
        with pytest.raises(StateError, match=reason):
            parse_state(QueryParams(bad))


def test_trend_lines_overlay_the_previous_period_and_fill_empty_periods():
    from datetime import date

    from dashboard.views import trend_lines

    state = parse_state(QueryParams("range=custom&from=2026-03-02&to=2026-03-03&series=a&compare=previous"))
    rows = {"series0": [{"period": date(2026, 3, 2), "breakdown": "", "value": 5},
                        {"period": date(2026, 3, 3), "breakdown": "", "value": 7}],
            "previous0": [{"period": date(2026, 2, 28), "breakdown": "", "value": 2}]}
    lines = trend_lines(rows, state)
    day = 86_400
    march_2 = 1_772_409_600  # 2026-03-02T00:00Z
    assert lines["x"] == [march_2, march_2 + day]
    assert lines["cohorts"] == [{"name": "a", "visitors": [5, 7]},
                                {"name": "a (previous period)", "visitors": [2, 0]}]


def test_the_channel_rules_are_the_ones_documented():
    from pathlib import Path

    from analytics.channels import DEFAULT, RULES

    documented = Path(__file__).resolve().parents[2].joinpath("docs", "queries.md").read_text()
    for rule in RULES:
        assert f"| {rule.channel} | {rule.when} |" in documented
    assert f"| {DEFAULT} |" in documented
