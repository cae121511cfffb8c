"""The flow's condition language: what matches, what is refused, and the mediator's per-event routes."""

from __future__ import annotations

import time

import pytest
from aiokafka.structs import ConsumerRecord

from headwater.conditions import MAX_LEAVES, ConditionError, compile_condition, glob_match
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.flow import FlowError, parse_flow
from headwater.projects.model import Project
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, read_route
from headwater.settings import Settings
from mediator.service import Mediator

ORDER = {"type": "track", "event": "Order Completed", "properties": {"total": 42.5, "test": True, "plan": "pro"},
         "context": {"library": {"name": "analytics.js"}}}
PAGE = {"type": "page", "name": "Home", "properties": {"path": "/"}, "context": {"library": {"name": "analytics-node"}}}


@pytest.mark.parametrize("condition, order, page", [
    ({"type": "track"}, True, False),
    ({"type": ["page", "screen"]}, False, True),
    ({"event": "Order *"}, True, False),
    ({"event": ["Signed Up", "Order Completed"]}, True, False),
    ({"event": "*Completed"}, True, False),
    ({"event": "Order"}, False, False),
    ({"field": "properties.test", "equals": True}, True, False),
    ({"field": "properties.test", "equals": 1}, False, False),  # JSON equality: true is not 1
    ({"field": "properties.total", "gte": 42.5}, True, False),
    ({"field": "properties.total", "lt": 42.5}, False, False),
    ({"field": "properties.plan", "gt": 1}, False, False),  # a string is not compared with a number
    ({"field": "properties.plan", "in": ["pro", "team"]}, True, False),
    ({"field": "properties.total", "in": [42.5, True]}, True, False),
    ({"field": "properties.test", "in": [1, "true"]}, False, False),  # true is neither
    ({"field": "properties", "in": ["x"]}, False, False),  # an object is in no list
    ({"field": "context.library.name", "equals": "analytics-node"}, False, True),
    ({"field": "properties.path", "exists": True}, False, True),
    ({"field": "properties.path", "exists": False}, True, False),
    ({"field": "context.library.name.deeper", "exists": True}, False, False),
    ({"field": "name", "equals": "Home"}, False, True),
    ({"not": {"type": "track"}}, False, True),
    ({"all": [{"type": "track"}, {"field": "properties.total", "gt": 100}]}, False, False),
    ({"any": [{"event": "Order *"}, {"field": "name", "equals": "Home"}]}, True, True),
])
def test_a_condition_matches_what_its_grammar_says(condition, order, page):
    matches = compile_condition(condition)
    assert (matches(ORDER), matches(PAGE)) == (order, page)


def test_a_sample_keeps_that_share_of_visitors_and_each_visitor_whole():
    half = compile_condition({"sample": 50})
    kept = {n for n in range(10_000) if half({"anonymousId": f"v{n}"})}
    assert 4_700 < len(kept) < 5_300
    assert all(half({"userId": f"v{n}", "event": "other"}) for n in kept)  # the same visitors, by either id
    assert not any(compile_condition({"sample": 0})({"anonymousId": f"v{n}"}) for n in range(1000))
    assert all(compile_condition({"sample": 100})({"anonymousId": f"v{n}"}) for n in range(1000))
    with pytest.raises(ConditionError, match="a percentage from 0 to 100"):
        compile_condition({"sample": 101})


def test_an_event_without_a_type_is_a_track_call():
    assert compile_condition({"type": "track"})({"event": "x"})
    assert compile_condition({"event": "x"})({"event": "x"})


def test_every_problem_of_a_condition_is_named_with_where_it_is():
    with pytest.raises(ConditionError) as refused:
        compile_condition({"all": [{"type": "click"}, {"field": "body.x", "equals": 1},
                                   {"field": "properties.a", "equals": 1, "in": [1]},
                                   {"event": ""}, {"field": "properties.n", "gt": "ten"}, {"regex": ".*"}]})
    problems = refused.value.problems
    assert len(problems) == 6
    assert "when.all[0].type: unknown type 'click'" in problems[0]
    assert problems[1].startswith("when.all[1].field: a path")
    assert "exactly one operator" in problems[2]
    assert problems[3].startswith("when.all[3].event: a string of 1 to 200")
    assert problems[4] == "when.all[4].gt: a number"
    assert "unknown test 'regex'" in problems[5]


def test_limits_are_refused():
    deep = {"type": "track"}
    for _ in range(5):
        deep = {"not": deep}
    with pytest.raises(ConditionError, match="nested deeper than 4"):
        compile_condition(deep)
    with pytest.raises(ConditionError, match=f"more than {MAX_LEAVES} tests"):
        compile_condition({"any": [{"type": "track"}] * (MAX_LEAVES + 1)})
    with pytest.raises(ConditionError, match="more than 8"):
        compile_condition({"event": "*a" * 9})
    with pytest.raises(ConditionError, match="1 to 100"):
        compile_condition({"field": "properties.a", "in": list(range(101))})


@pytest.mark.parametrize("glob, text, expected", [
    ("Order *", "Order Completed", True), ("*", "", True), ("a*b*c", "abc", True), ("a*b*c", "acb", False),
    ("ab*ba", "aba", False), ("*x*", "yyy", False), ("a**a", "aa", True), ("Order", "Orders", False),
])
def test_globs_have_only_star(glob, text, expected):
    assert glob_match(glob.split("*"), text) is expected


def test_a_hostile_glob_takes_linear_time():
    text = "a" * 100_000
    started = time.perf_counter()
    assert not glob_match(("*a" * 8 + "*b").split("*"), text)
    assert time.perf_counter() - started < 0.05


def test_a_flow_document_routes_each_event():
    flow = parse_flow(["validate", {"step": "enrich", "when": {"not": {"field": "context.library.name",
                                                                          "equals": "analytics-node"}}},
                       "anonymize", {"step": "index", "when": {"not": {"field": "properties.test", "equals": True}}}])
    assert flow.conditional
    assert flow.route(PAGE) == ("validate", "anonymize", "index")
    assert flow.route(ORDER) == ("validate", "enrich", "anonymize")  # no index: dropped


def test_a_bad_flow_document_names_every_problem():
    with pytest.raises(FlowError) as refused:
        parse_flow([{"step": "enrich", "when": {"type": "nope"}}, {"step": "validate", "if": {}}, "bogus",
                    {"step": "index", "when": {"field": "x"}}])
    message = str(refused.value)
    for problem in ("step 0 (enrich) when.type: unknown type 'nope'", "step 1: a step name, {",
                    "unknown step 'bogus'", "step 3 (index) when.field: a path"):
        assert problem in message


def record(offset: int, envelopes: list[Envelope], partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord("raw", partition, offset, 0, 0, b"shop:v", encode_batch(envelopes), None, 0, 0,
                          [(PROJECT_HEADER, b"shop"), (EVENTS_HEADER, str(len(envelopes)).encode())])


async def test_the_mediator_writes_each_events_own_route_and_drops_what_skips_index(tmp_path):
    mediator = Mediator(Settings(local_dir=str(tmp_path)), lambda settings, projects: None)
    flow = ["validate", {"step": "enrich", "when": {"event": "Order *"}},
            {"step": "index", "when": {"not": {"field": "properties.test", "equals": True}}}]
    mediator.store.projects["shop"] = Project("shop", "Shop", 0, flow=flow)
    envelope = lambda n, event: Envelope("shop", f"m{n}", 0, "r", event)  # noqa: E731
    records = [record(0, [envelope(0, ORDER), envelope(1, PAGE)]),
               record(1, [envelope(2, {**ORDER, "properties": {}}), envelope(3, PAGE)])]
    outputs = mediator.route(records)
    routes = {read_route(o.headers) and tuple(read_route(o.headers)): [e.message_id for e in decode_batch(o.value)]
              for o in outputs}
    assert routes == {("validate", "enrich", "index"): ["m2"], ("validate", "index"): ["m1", "m3"]}
    assert {o.topic.rsplit(".", 1)[-1] for o in outputs} == {"validate"}
    assert all(o.events == int(dict(o.headers)[EVENTS_HEADER]) for o in outputs)
    assert mediator.dropped._value.get() == 1  # m0: a test order
    assert {key[1:]: row for key, row in mediator.counts.rows.items()} == {("shop", "mediator"): [4, 3, 1, 0]}
    await mediator.relay.consumer.stop()
    await mediator.relay.producer.stop()


async def test_a_record_whose_events_share_one_route_goes_on_as_it_came(tmp_path):
    mediator = Mediator(Settings(local_dir=str(tmp_path)), lambda settings, projects: None)
    mediator.store.projects["shop"] = Project("shop", "Shop", 0, flow=[
        "validate", {"step": "index", "when": {"not": {"field": "properties.test", "equals": True}}}])
    given = record(0, [Envelope("shop", f"m{n}", 0, "r", PAGE) for n in range(3)], partition=1)
    (output,) = mediator.route([given])
    assert output.value == given.value and output.events == 3
    assert read_route(output.headers) == ["validate", "index"]
    await mediator.relay.consumer.stop()
    await mediator.relay.producer.stop()
