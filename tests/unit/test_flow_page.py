"""The Flow page's view of a flow: the mediator and each step, its condition, what a transform step does,
its figures and the lag of the consumer group that runs it."""

from __future__ import annotations

from dashboard.views import FLOW_MINUTES, flow_steps

FLOW = ["validate", {"step": "transform", "name": "tidy", "do": [{"drop": "properties.debug"}]},
        {"step": "transform", "name": "orders", "python": "tag_order", "when": {"event": "Order *"}}, "index"]
LAGS = {"headwater-mediator": 1, "headwater-processor-validate": 5, "headwater-processor-transform": 7,
        "headwater-indexer-events": 2}
COUNTS = [{"step": "mediator", "events_in": 600, "events_out": 540, "dropped": 60, "dead_lettered": 0},
          {"step": "transform:orders", "events_in": 120, "events_out": 150, "dropped": 0, "dead_lettered": 30},
          {"step": "validate", "events_in": 540, "events_out": 480, "dropped": 0, "dead_lettered": 60}]


def test_the_mediator_and_each_step_with_what_it_does_its_counts_and_its_groups_lag():
    steps = flow_steps(FLOW, COUNTS, [{"step": "index", "events": 6}, {"step": "validate", "events": 60}],
                       [{"events": 120}], LAGS)
    assert [(s["name"], s["when"], s["lag"]) for s in steps] == [
        ("mediator", None, 1), ("validate", None, 5), ("transform:tidy", None, 7),
        ("transform:orders", {"event": "Order *"}, 7), ("index", None, 2)]
    assert steps[2]["does"].startswith("1 operation, version d") and steps[3]["does"] == "python: tag_order"
    assert steps[0]["per_min"] == {"events_in": 10, "events_out": 9, "dropped": 1, "dead_lettered": 0}
    assert steps[3]["per_min"] == {"events_in": 2, "events_out": 2.5, "dropped": 0, "dead_lettered": 0.5}
    assert steps[2]["per_min"] == dict.fromkeys(("events_in", "events_out", "dropped", "dead_lettered"), 0)
    # index: what was stored, and what ClickHouse refused (the validate row of failed_events is validate's)
    assert (steps[4]["per_min"], steps[4]["stored_per_min"], steps[4]["dead_per_min"]) == (
        None, 120 / FLOW_MINUTES, 6 / FLOW_MINUTES)
    assert [s["stored_per_min"] for s in steps[:4]] == [None] * 4


def test_the_default_flow_and_an_unmeasured_lag():
    steps = flow_steps(None, [], [], [], None)
    assert [s["name"] for s in steps] == ["mediator", "validate", "enrich", "anonymize", "sessionize", "index"]
    assert all(s["lag"] is None for s in steps)
    assert steps[4]["per_min"]["events_in"] == 0 and steps[5]["stored_per_min"] == 0
