"""The Flow page's view of a flow: each step's condition, what a transform step does, its figures and
the lag of the consumer group that runs it."""

from __future__ import annotations

from dashboard.views import flow_steps

FLOW = ["validate", {"step": "transform", "name": "tidy", "do": [{"drop": "properties.debug"}]},
        {"step": "transform", "name": "orders", "python": "tag_order", "when": {"event": "Order *"}}, "index"]
LAGS = {"headwater-processor-validate": 5, "headwater-processor-transform": 7, "headwater-indexer-events": 2}


def test_each_step_with_what_it_does_its_figures_and_its_groups_lag():
    steps = flow_steps(FLOW, [{"step": "transform:orders", "events": 30}], [{"events": 120}], LAGS)
    assert [(s["name"], s["when"], s["lag"]) for s in steps] == [
        ("validate", None, 5), ("transform:tidy", None, 7), ("transform:orders", {"event": "Order *"}, 7),
        ("index", None, 2)]
    assert steps[1]["does"].startswith("1 operation, version d") and steps[2]["does"] == "python: tag_order"
    assert [s["dead_per_min"] for s in steps] == [0, 0, 0.5, 0] and steps[3]["stored_per_min"] == 2
    assert [s["stored_per_min"] for s in steps[:3]] == [None] * 3


def test_the_default_flow_and_an_unmeasured_lag():
    steps = flow_steps(None, [], [], None)
    assert [s["name"] for s in steps] == ["validate", "enrich", "anonymize", "sessionize", "index"]
    assert all(s["lag"] is None for s in steps)
