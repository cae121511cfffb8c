"""Cohorts: their definitions are checked with every problem named, and a cohort filter is parameters
and a condition on the ids, never text pasted into the SQL."""

from __future__ import annotations

import pytest

from analytics.cohorts import check_cohorts, find
from analytics.filters import FilterError, Filters

REPEAT = {"name": "repeat-buyers", "rules": [{"did": "Order Completed", "at_least": 2, "within_days": 30},
                                             {"did_not": "Refund Requested", "within_days": 7}]}
PAYING = {"name": "paying", "match": "any", "rules": [{"trait": "plan", "in": ["pro", "enterprise"]},
                                                      {"trait": "vip", "exists": True}]}


def test_good_cohorts_pass():
    assert check_cohorts([REPEAT, PAYING]) == []


@pytest.mark.parametrize("cohorts, problem", [
    ({"name": "x"}, "cohorts must be a list"),
    ([{"name": "bad name!", "rules": [{"did": "A"}]}], "name must be"),
    ([{"name": "c", "rules": []}], "rules must be a list of 1 to 10"),
    ([{"name": "c", "rules": [{"did": "A", "did_not": "B"}]}], "exactly one of did, did_not, trait, imported"),
    ([{"name": "c", "rules": [{"imported": "orgs", "column": "size", "gt": "500"}]}], "gt must be a number"),
    ([{"name": "c", "rules": [{"imported": "orgs", "column": "size`; DROP", "gt": 5}]}], "column must be a column name"),
    ([{"name": "c", "rules": [{"imported": "Orgs!", "column": "size", "exists": True}]}], "imported must be the name"),
    ([{"name": "c", "rules": [{"imported": "orgs", "column": "size", "by": "x y", "exists": True}]}], "by must be a column"),
    ([{"name": "c", "rules": [{"imported": "orgs", "column": "size"}]}], "exactly one of equals, in, gt, lt, exists"),
    ([{"name": "c", "rules": [{"imported": "orgs", "column": "plan", "in": [None]}]}], "in must be a list of 1 to 100"),
    ([{"name": "c", "rules": [{"did": "A", "at_least": 0}]}], "at_least must be a whole number"),
    ([{"name": "c", "rules": [{"did_not": "A", "at_least": 2}]}], "at_least does not go with did_not"),
    ([{"name": "c", "rules": [{"trait": "plan"}]}], "exactly one of equals, in, exists"),
    ([{"name": "c", "rules": [{"trait": "plan", "equals": {"a": 1}}]}], "equals must be a text"),
    ([{"name": "c", "match": "most", "rules": [{"did": "A"}]}], "match must be all or any"),
    ([REPEAT, REPEAT], "defined twice"),
    ([{"name": "c", "rules": [{"did": "A" * 201}]}], "did must be a name of 1 to 200"),
])
def test_bad_cohorts_say_why(cohorts, problem):
    assert any(problem in p for p in check_cohorts(cohorts)), check_cohorts(cohorts)


def test_a_cohort_filter_is_parameters_and_a_condition_on_ids():
    filters = Filters(cohort="repeat-buyers").resolve("shop", [PAYING, REPEAT])
    condition, params = filters.events_condition(), filters.params()
    assert " AND visitor_hash IN (" in condition and "hw_shop.person_ids" in condition
    assert "Order Completed" not in condition and params["cohort_0_event"] == "Order Completed"
    assert params["cohort_0_times"] == 2 and params["cohort_1_days"] == 7 and params["cohort_days"] == 30
    by_id = Filters(cohort="repeat-buyers", count_ids=True).resolve("shop", [REPEAT])
    assert "person_ids" not in by_id.events_condition()
    assert " AND visitor_hash IN (" in filters.sessions_condition("shop", "A", "B")
    assert filters.active() == {"cohort": "repeat-buyers"} and filters


def test_trait_values_are_compared_as_json():
    params = find("shop", [PAYING], "paying").params()
    assert params["cohort_0_values"] == ('"pro"', '"enterprise"') and params["cohort_1_trait"] == "vip"


def test_an_unknown_cohort_is_refused_with_the_ones_there_are():
    with pytest.raises(FilterError, match="no cohort 'nope' .*repeat-buyers"):
        Filters(cohort="nope").resolve("shop", [REPEAT])
    with pytest.raises(FilterError, match="was not looked up"):
        Filters(cohort="repeat-buyers").events_condition()


def test_a_breakdown_gives_each_cohort_its_own_parameters():
    from analytics.cohorts import for_breakdown, membership

    both = for_breakdown("shop", [REPEAT, PAYING], ["repeat-buyers", "paying"])
    expression, params = membership(both, count_ids=False)
    assert expression.startswith("arrayJoin(arrayFilter(") and expression.count("visitor_hash IN (") == 2
    assert params["by0_name"] == "repeat-buyers" and params["by1_name"] == "paying"
    assert params["by0_0_event"] == "Order Completed" and params["by1_0_trait"] == "plan"
    with pytest.raises(ValueError):
        membership([], count_ids=True)


def test_an_imported_rule_is_a_condition_on_the_imported_table_with_its_values_as_parameters():
    big = {"name": "big-orgs", "rules": [{"imported": "user_organizations", "by": "external_id", "column": "size",
                                          "gt": 500}]}
    assert check_cohorts([big]) == []
    filters = Filters(cohort="big-orgs").resolve("shop", [big])
    sql, params = filters.events_condition(), filters.params()
    assert "FROM hw_shop.`imported_user_organizations` FINAL WHERE `size` > %(cohort_0_value)s" in sql
    assert "toString(`external_id`)" in sql and "OR user_id != ''" in sql and params["cohort_0_value"] == 500
    listed = find("shop", [{"name": "plans", "rules": [{"imported": "users", "column": "plan", "in": ["pro", 2]}]}],
                  "plans")
    assert listed.params()["cohort_0_value"] == ("pro", 2)
