"""Discovery's pure parts: the multiple-testing adjustment, the choice of candidate funnels, the folding
of paths into a Sankey diagram, and the refusals of bad requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import fisher_exact

from analytics import discovery, lift
from analytics.discovery import OTHER, DiscoveredFunnel
from analytics.queries import QueryError

T0 = datetime(2026, 5, 4, tzinfo=UTC)


def test_holm_multiplies_by_the_tests_left_and_never_decreases():
    assert lift.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert lift.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])
    assert lift.holm([]) == []


def test_drivers_compare_each_feature_with_the_rest():
    rows = [{"dimension": "", "value": "", "visitors": 1000, "converted": 100},
            {"dimension": "step", "value": "/pricing", "visitors": 200, "converted": 60},
            {"dimension": "step", "value": "/about", "visitors": 300, "converted": 30},
            {"dimension": "device", "value": "Desktop", "visitors": 1000, "converted": 100}]
    found = lift.drivers(rows)
    assert found.tested == 2  # a feature every visitor has is not a comparison
    pricing = found.drivers[0]
    assert (pricing.value, pricing.significant) == ("/pricing", True)
    assert pricing.lift == pytest.approx((60 / 200) / (40 / 800))
    assert pricing.low < pricing.lift < pricing.high
    assert pricing.p_value == pytest.approx(fisher_exact([[60, 140], [40, 760]]).pvalue)
    assert pricing.p_adjusted == pytest.approx(min(1, 2 * pricing.p_value))
    about = found.drivers[1]
    assert about.lift == pytest.approx(1.0) and not about.significant


def test_a_feature_no_one_else_converts_without_has_no_finite_lift():
    rows = [{"dimension": "", "value": "", "visitors": 100, "converted": 10},
            {"dimension": "step", "value": "/x", "visitors": 20, "converted": 10}]
    only = lift.drivers(rows).drivers[0]
    assert only.lift is None and only.low is None and only.significant


def pairs(*counted: tuple[str, str, int]) -> list[dict]:
    return [{"steps": [a, b], "sessions": n} for a, b, n in counted]


def test_candidates_are_chains_of_steps_done_mostly_in_their_order():
    rows = pairs(("/", "/pricing", 500), ("/pricing", "/", 480),  # popular pages in either order: no funnel
                 ("Cart", "Checkout", 90), ("Checkout", "Cart", 10), ("Checkout", "Paid", 80),
                 ("Cart", "Paid", 85), ("Paid", "Cart", 40), ("/pricing", "Cart", 60))
    rows.append({"steps": ["Cart"], "sessions": 120})
    candidates = discovery.candidate_funnels(rows)
    assert candidates[:4] == [("Cart", "Checkout"), ("Cart", "Paid"), ("Checkout", "Paid"), ("/pricing", "Cart")]
    assert ("/", "/pricing") not in candidates and ("/pricing", "/") not in candidates
    assert ("Cart", "Checkout", "Paid") in candidates  # every pair of it, in order, is a link
    assert ("/pricing", "Cart", "Checkout") not in candidates  # /pricing → Checkout was not seen
    assert discovery.candidate_funnels(rows, target="Checkout") == [("Cart", "Checkout")]


def test_funnel_rows_show_the_longest_first_ranked_and_leave_out_the_absorbed():
    funnels = [("a", "b"), ("a", "b", "c"), ("x", "y"), ("b", "c")]
    prefixes = discovery.prefixes_of(funnels)
    exact = {("a",): 100, ("a", "b"): 90, ("a", "b", "c"): 30, ("x",): 500, ("x", "y"): 20, ("b",): 95,
             ("b", "c"): 31}
    counts = {f"prefix_{i}": exact[p] for i, p in enumerate(prefixes)}
    by_volume = discovery.funnel_rows(funnels, counts)
    # b → c is left out: a → b → c keeps 30 of its 31 sessions
    assert [f.steps for f in by_volume] == [("a", "b", "c"), ("a", "b"), ("x", "y")]
    assert by_volume[0].reached == (100, 90, 30) and by_volume[0].worst_step == 3
    by_dropoff = discovery.funnel_rows(funnels, counts, "dropoff")
    assert [f.steps for f in by_dropoff] == [("a", "b", "c"), ("x", "y"), ("a", "b")]
    with pytest.raises(QueryError):
        discovery.funnel_rows(funnels, counts, "luck")
    assert DiscoveredFunnel(("a", "b"), (0, 0)).conversion == 0


def test_sankey_keeps_the_busiest_steps_of_each_level_and_folds_the_rest():
    rows = [{"offset": 0, "source": "/s", "target": t, "sessions": n}
            for t, n in (("/a", 50), ("/b", 30), ("/c", 5), ("/d", 4), ("(end)", 1))]
    rows.append({"offset": 1, "source": "/a", "target": "/d", "sessions": 7})
    drawn = discovery.sankey(rows, per_level=2)
    links = {(link["source"], link["target"]): link["sessions"] for link in drawn["links"]}
    assert links == {("0:/s", "1:/a"): 50, ("0:/s", "1:/b"): 30, ("0:/s", f"1:{OTHER}"): 9,
                     ("0:/s", "1:(end)"): 1, ("1:/a", "2:/d"): 7}
    nodes = {n["id"]: n["sessions"] for n in drawn["nodes"]}
    assert nodes["0:/s"] == 90 and nodes["1:/a"] == 50


@pytest.mark.parametrize("call", [
    lambda: discovery.paths_query("p", "/x", T0, T0 + timedelta(days=1), direction="sideways"),
    lambda: discovery.paths_query("p", "/x", T0, T0 + timedelta(days=1), depth=99),
    lambda: discovery.paths_query("p", "", T0, T0 + timedelta(days=1)),
    lambda: discovery.drivers_query("p", "x" * 1001, T0, T0 + timedelta(days=1)),
    lambda: discovery.mining_query("p", T0, T0 + timedelta(days=1), sample_events=10),
    lambda: discovery.recount_query("p", [], T0, T0 + timedelta(days=1)),
    lambda: discovery.recount_query("p", [tuple(f"s{i}" for i in range(91))], T0, T0 + timedelta(days=1)),
])
def test_bad_requests_are_refused_with_a_reason(call):
    with pytest.raises(QueryError):
        call()
