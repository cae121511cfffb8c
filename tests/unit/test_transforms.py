"""Transform steps: the declarative operations, the flow's transform entries, and the transform step
running declarative and Python transformations (budget, dead letters, splits, lineage, breaker)."""

from __future__ import annotations

import textwrap

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from headwater import plugins
from headwater.deadletter import Rejected
from headwater.envelope import Envelope, encode_batch
from headwater.flow import FlowError, parse_flow
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects
from headwater.routing import encode_route, read_route
from headwater.settings import Settings
from headwater.topics import step_topic, topic_specs
from headwater.transforms import MAX_OPERATIONS, TransformError, compile_operations
from processors.base import transform_for
from processors.transform import Transform, check_settings

EVENT = {"type": "track", "event": "Order Completed", "anonymousId": "a1", "messageId": "m1",
         "properties": {"total": 42, "country": "DE", "secret": "x", "nested": {"a": 1}},
         "context": {"library": {"name": "analytics.js"}}}


def run(operations: list, event: dict | None = None) -> dict | None:
    return compile_operations(operations, "do")(orjson.loads(orjson.dumps(event or EVENT)))


# --- the declarative operations ---------------------------------------------------------------------

def test_set_rename_copy_drop_and_lookup_change_the_event():
    out = run([
        {"set": "properties.env", "value": "prod"},
        {"set": "context.app.build", "value": 7},  # parents are created
        {"rename": "properties.total", "to": "properties.revenue"},
        {"copy": "properties.nested", "to": "traits.copied"},
        {"drop": ["properties.secret", "properties.missing"]},
        {"lookup": "properties.country", "table": {"DE": "Germany"}, "to": "properties.country_name"},
        {"lookup": "properties.revenue", "table": {"42": "big"}, "default": "small", "to": "properties.size"},
    ])
    assert out is not None
    props = out["properties"]
    assert props["env"] == "prod" and out["context"]["app"] == {"build": 7}
    assert "total" not in props and props["revenue"] == 42
    assert "secret" not in props and props["country_name"] == "Germany" and props["size"] == "big"
    out["traits"]["copied"]["a"] = 2
    assert props["nested"] == {"a": 1}  # a copy, not the same object


def test_absent_fields_and_non_object_parents_are_left_alone():
    out = run([{"rename": "properties.nothing", "to": "properties.else"},
               {"set": "properties.total.deep", "value": 1},  # total is a number: nothing happens
               {"lookup": "properties.country", "table": {"FR": "France"}}])
    assert out is not None
    assert "else" not in out["properties"] and out["properties"]["total"] == 42
    assert out["properties"]["country"] == "DE"  # not in the table, no default


def test_a_set_value_is_fresh_for_every_event():
    apply = compile_operations([{"set": "properties.tags", "value": ["a"]}], "do")
    first, second = apply({"properties": {}}), apply({"properties": {}})
    assert first is not None and second is not None
    first["properties"]["tags"].append("b")
    assert second["properties"]["tags"] == ["a"]


def test_drop_if_and_sample_drop_events():
    assert run([{"drop_if": {"field": "properties.total", "gt": 10}}]) is None
    assert run([{"drop_if": {"field": "properties.total", "gt": 100}}]) is not None
    assert run([{"sample": 0}]) is None and run([{"sample": 100}]) is not None


@pytest.mark.parametrize("operations, problem", [
    ([], "a list of 1 to"),
    ([{"upper": "properties.a"}], "an object with one of set, rename"),
    ([{"set": "messageId", "value": "x"}], "do[0].set: a path such as"),
    ([{"set": "properties", "value": {}}], "a key below properties"),
    ([{"set": "properties.a"}], "give the value beside set"),
    ([{"set": "properties.a", "value": "x" * 2000}], "more than 1000 bytes"),
    ([{"rename": "properties.a"}], "do[0].rename.to: a path"),
    ([{"drop": "properties.a", "to": "x"}], "drop takes no to"),
    ([{"lookup": "properties.a", "table": {}}], "an object of 1 to 1000 entries"),
    ([{"drop_if": {"field": "properties.a", "near": 1}}], "do[0].drop_if: give exactly one operator"),
    ([{"sample": 150}], "do[0].sample: a percentage"),
    ([{"drop": "properties.a"}] * (MAX_OPERATIONS + 1), "a list of 1 to"),
])
def test_bad_operations_are_refused_with_where_they_are(operations, problem):
    with pytest.raises(TransformError) as refused:
        compile_operations(operations, "do")
    assert problem in str(refused.value)


def test_every_problem_is_named():
    with pytest.raises(TransformError) as refused:
        compile_operations([{"set": "type", "value": 1}, {"copy": "properties.a", "to": "timestamp"}], "do")
    assert [p.split(":")[0] for p in refused.value.problems] == ["do[0].set", "do[1].copy.to"]


# --- transform entries in a flow --------------------------------------------------------------------

def test_a_flow_names_its_transform_steps_in_the_slip():
    flow = parse_flow(["validate", {"step": "transform", "name": "tidy", "do": [{"drop": "properties.secret"}]},
                       {"step": "transform", "name": "orders", "python": "order_enrich",
                        "when": {"event": "Order *"}}, "sessionize", "index"])
    assert flow.steps == ("validate", "transform:tidy", "transform:orders", "sessionize", "index")
    assert flow.transforms["transform:tidy"].version.startswith("d")
    assert flow.transforms["transform:orders"].python == "order_enrich"
    assert flow.route({"type": "page"}) == ("validate", "transform:tidy", "sessionize", "index")


@pytest.mark.parametrize("flow, problem", [
    (["transform", "index"], "is an object with its name"),
    ([{"step": "transform", "name": "a b", "do": [{"drop": "name"}]}, "index"], "NAME of 1 to 40"),
    ([{"step": "transform", "name": "t"}, "index"], "give either do"),
    ([{"step": "transform", "name": "t", "do": [{"drop": "name"}], "python": "p"}, "index"], "give either do"),
    ([{"step": "transform", "name": "t", "do": [{"drop": "messageId"}]}, "index"], "step 0 (transform:t).do[0]"),
    (["sessionize", {"step": "transform", "name": "t", "do": [{"drop": "name"}]}, "index"], "keep the order"),
    ([{"step": "transform", "name": "t", "python": "p"}] * 2 + ["index"], "a step is repeated"),
    (["transform:t", "index"], "unknown step 'transform:t'"),  # slip names are made, not given
    ([{"step": "transform:t"}, "index"], "unknown step 'transform:t'"),
    (["enrich:x", "index"], "unknown step 'enrich:x'"),
])
def test_bad_transform_entries_are_refused(flow, problem):
    with pytest.raises(FlowError, match=problem.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        parse_flow(flow)


# --- the transform step -----------------------------------------------------------------------------

PLUGINS = {
    "shout": """
        VERSION = "1.2.0"
        def transform(event, context):
            event["properties"]["shout"] = event["event"].upper() + " " + context.step + "@" + context.version
            return event
    """,
    "fan_out": """
        VERSION = "2"
        def transform(event, context):
            return [dict(event, event=f"Item {i}") for i in range(3)]
    """,
    "twice": """
        VERSION = "1"
        def transform(event, context):
            return [event, event]
    """,
    "discard": """
        VERSION = "1"
        def transform(event, context):
            return None
    """,
    "broken": """
        VERSION = "1"
        def transform(event, context):
            event["properties"]["half"] = "done"
            return event["properties"]["missing"]
    """,
    "stubborn": """
        VERSION = "1"
        import time
        def transform(event, context):
            while True:
                try:
                    time.sleep(5)
                except Exception:
                    pass
    """,
    "odd": """
        VERSION = "1"
        def transform(event, context):
            return {"when": {1, 2}}
    """,
}


@pytest.fixture(scope="module")
def transforms_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("transforms")
    for name, source in PLUGINS.items():
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return str(directory)


def step_for(transforms_dir: str, flow: list) -> Transform:
    settings = Settings(transforms_dir=transforms_dir, transform_budget_ms=50)
    return Transform(settings, FixedProjects(Project("shop", "Shop", 0, flow=[*flow, "index"])))


def envelope(event: dict | None = None) -> Envelope:
    return Envelope("shop", "m1", 0, "r1", orjson.loads(orjson.dumps(event or EVENT)))


def python_step(name: str) -> dict:
    return {"step": "transform", "name": f"t_{name}", "python": name}


def test_python_transformations_change_split_and_drop_events(transforms_dir):
    step = step_for(transforms_dir, [python_step("shout"), python_step("fan_out"), python_step("discard")])
    original = envelope()
    given = original.event
    changed = step.bound("transform:t_shout").process(original)
    assert isinstance(changed, Envelope)
    assert changed.event["properties"]["shout"] == "ORDER COMPLETED t_shout@1.2.0"
    assert changed.enriched["transforms"] == ["t_shout@1.2.0"]
    assert "shout" not in given["properties"]  # the transformation had a copy

    split = step.bound("transform:t_fan_out").process(changed)
    assert isinstance(split, list)
    assert [e.message_id for e in split] == ["m1", "m1:1", "m1:2"]
    assert [e.event["messageId"] for e in split] == ["m1", "m1:1", "m1:2"]
    assert [e.event["event"] for e in split] == ["Item 0", "Item 1", "Item 2"]
    assert split[2].enriched["transforms"] == ["t_shout@1.2.0", "t_fan_out@2"]
    assert step.bound("transform:t_discard").process(envelope()) is None
    twice = step_for(transforms_dir, [python_step("twice")]).bound("transform:t_twice").process(envelope())
    assert isinstance(twice, list) and [e.event["messageId"] for e in twice] == ["m1", "m1:1"]


@pytest.mark.parametrize("plugin, reason, detail", [
    ("broken", "transform_error", "KeyError: 'missing' (broken.py:5 in transform: return event"),
    ("stubborn", "transform_timeout", "stubborn took more than 50 ms"),
    ("odd", "transform_output", "not JSON"),
])
def test_a_failing_python_transformation_rejects_the_event_as_it_was_given(transforms_dir, plugin, reason, detail):
    step = step_for(transforms_dir, [python_step(plugin)])
    given = envelope()
    with pytest.raises(Rejected) as rejected:
        step.bound(f"transform:t_{plugin}").process(given)
    assert rejected.value.reason == reason and detail in rejected.value.detail
    assert given.event == EVENT  # the dead letter carries the event untouched


def test_a_transformation_that_keeps_failing_raises_the_alarm_and_recovers(transforms_dir, capsys):
    from prometheus_client import CollectorRegistry
    step = step_for(transforms_dir, [python_step("broken")])
    registry = CollectorRegistry()
    step.register(registry)
    for _ in range(100):
        with pytest.raises(Rejected):
            step.bound("transform:t_broken").process(envelope())
    assert registry.get_sample_value("headwater_transform_failing", {"project": "shop", "transform": "t_broken"}) == 1
    assert registry.get_sample_value("headwater_transform_failures_total", {
        "project": "shop", "transform": "t_broken", "reason": "transform_error"}) == 100
    assert "transform_failing" in capsys.readouterr().out
    dropping = step_for(transforms_dir, [python_step("discard")])
    dropping.register(CollectorRegistry())
    dropping.bound("transform:t_discard").process(envelope())
    assert dropping.dropped is not None and dropping.dropped.labels("shop", "t_discard")._value.get() == 1
    for _ in range(step.settings.invalid_window):
        step.outcome("shop", "t_broken", None)  # the fix deployed: events pass again
    assert registry.get_sample_value("headwater_transform_failing", {"project": "shop", "transform": "t_broken"}) == 0


def test_a_step_missing_from_the_flow_or_the_plugins_dead_letters(transforms_dir):
    step = step_for(transforms_dir, [python_step("nowhere")])
    with pytest.raises(Rejected, match="no transformation 'nowhere' is installed"):
        step.bound("transform:t_nowhere").process(envelope())
    with pytest.raises(Rejected, match="the project's flow has no step 'transform:gone'") as rejected:
        step.bound("transform:gone").process(envelope())
    assert rejected.value.reason == "invalid_flow"


def test_declarative_steps_record_their_version(transforms_dir):
    step = step_for(transforms_dir, [{"step": "transform", "name": "tidy", "do": [{"drop": "properties.secret"}]}])
    out = step.bound("transform:tidy").process(envelope())
    assert isinstance(out, Envelope) and "secret" not in out.event["properties"]
    [lineage] = out.enriched["transforms"]
    assert lineage.startswith("tidy@d") and lineage == f"tidy@{step.spec('shop', 'transform:tidy').version}"


def test_split_events_go_on_through_the_next_transforms_in_one_record(transforms_dir):
    settings = Settings(transforms_dir=transforms_dir)
    step = step_for(transforms_dir, [python_step("fan_out"), python_step("shout")])
    partitions = PartitionMap()
    partitions.counts = {spec.name: 1 for spec in topic_specs(settings)}
    transform = transform_for(step, partitions)
    route = ["transform:t_fan_out", "transform:t_shout", "sessionize", "index"]
    record = ConsumerRecord(step_topic(settings, "transform"), 0, 7, 0, 0, b"k", encode_batch([envelope()]), None,
                            0, 0, encode_route(route))
    [out] = transform([record])
    assert out.topic == step_topic(settings, "sessionize") and out.events == 3
    assert read_route(out.headers) == ["sessionize", "index"]
    events = orjson.loads(out.value)
    assert [e["message_id"] for e in events] == ["m1", "m1:1", "m1:2"]
    assert [e["event"]["properties"]["shout"] for e in events] == [f"ITEM {i} t_shout@1.2.0" for i in range(3)]
    assert events[1]["enriched"]["transforms"] == ["t_fan_out@2", "t_shout@1.2.0"]


def test_plugins_that_do_not_load_are_named(tmp_path):
    (tmp_path / "no_version.py").write_text("def transform(event, context):\n    return event\n")
    (tmp_path / "raises.py").write_text("raise RuntimeError('at import')\n")
    (tmp_path / "bad name.py").write_text("VERSION = '1'\ndef transform(e, c):\n    return e\n")
    problems = check_settings(Settings(transforms_dir=str(tmp_path)))
    assert any("no_version.py: defines transform(event, context) and a VERSION" in p for p in problems)
    assert any("raises.py: does not load: RuntimeError: at import" in p for p in problems)
    assert any("bad name.py: a transformation's name is" in p for p in problems)
    assert check_settings(Settings(transforms_dir=str(tmp_path / "absent")))[0].endswith("is not a directory")
    assert "transform_budget_ms" in check_settings(Settings(transform_budget_ms=0))[0]
    assert plugins.installed("")[0] == {}


def test_the_test_harness_shows_each_events_outcome(transforms_dir):
    from commands.transform import TransformTestError, test_step

    settings = Settings(transforms_dir=transforms_dir)
    shown = test_step(settings, "fan_out", [EVENT, {"type": "track", "event": "x", "messageId": "m2"}])["results"]
    assert [r["outcome"] for r in shown] == ["split", "split"]
    assert [e["event"]["messageId"] for e in shown[0]["events"]] == ["m1", "m1:1", "m1:2"]
    assert shown[0]["events"][0]["lineage"] == ["fan_out@2"]
    broken = test_step(settings, "broken", EVENT)["results"][0]
    assert broken["outcome"] == "dead_letter" and broken["reason"] == "transform_error"
    flow = [{"step": "transform", "name": "tidy", "do": [{"drop_if": {"event": "x"}}]}, "index"]
    assert [r["outcome"] for r in test_step(settings, "tidy", [EVENT, {"event": "x"}], flow)["results"]] == \
        ["changed", "dropped"]
    with pytest.raises(TransformTestError, match="no transformation 'nope' is installed"):
        test_step(settings, "nope", EVENT)
    with pytest.raises(TransformTestError, match="the flow has no transform step 'other'; it has tidy"):
        test_step(settings, "other", EVENT, flow)


def test_a_slip_that_ends_at_a_local_step_is_passed_on_not_a_crash(transforms_dir):
    settings = Settings(transforms_dir=transforms_dir)
    step = step_for(transforms_dir, [python_step("shout"), python_step("fan_out")])
    partitions = PartitionMap()
    partitions.counts = {spec.name: 1 for spec in topic_specs(settings)}
    record = ConsumerRecord(step_topic(settings, "transform"), 0, 7, 0, 0, b"k", encode_batch([envelope()]), None,
                            0, 0, encode_route(["transform:t_shout", "transform:t_fan_out"]))  # no index: malformed
    [out] = transform_for(step, partitions)([record])
    assert read_route(out.headers) == ["transform:t_fan_out"] and not out.dead
