"""Tag manager containers without a browser: what a definition may hold, how it is compiled into the
runtime (as data only), the preview tokens, and the store's records."""

from __future__ import annotations

import json

import orjson
import pytest

from headwater.settings import Settings
from headwater.tags import preview
from headwater.tags.compile import compile_container, config
from headwater.tags.model import DefinitionError, custom_code, parse_definition
from headwater.tags.store import ContainerStore

SECRET = "a-secret-key-of-at-least-thirty-two-characters"
HOSTILE = '</script><script>alert(1)</script>"]);alert(1);//\u2028\u2029'


def problems(raw: object) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(raw)
    return caught.value.problems


def test_a_definition_is_refused_with_where_and_why():
    assert problems({"tags": {"x": {"kind": "hunch"}}}) == ["tags.x.kind: Invalid enum value 'hunch'"]
    assert problems({"tags": {"x": {"kind": "pixel", "onload": "alert(1)"}}}) == [
        "tags.x: Object contains unknown field `onload`"]
    assert problems({"triggers": {"t": {"kind": "timer", "interval_ms": 5}}}) == [
        "triggers.t.interval_ms: Expected `int` >= 100"]
    assert "a name is a letter" in problems({"variables": {"1bad": {"kind": "referrer"}}})[0]
    assert problems({"tags": [], "extra": 1}) == ["extra is not a part of a definition (variables, triggers, tags)",
                                                   "tags is an object of at most 100 entries, by name"]
    found = problems({
        "variables": {"page_url": {"kind": "referrer"}, "loop": {"kind": "lookup", "input": "loop"},
                      "q": {"kind": "query"}},
        "triggers": {"again": {"kind": "pageview", "conditions": [
            {"variable": "nothing", "op": "equals"}, {"variable": "page_path", "op": "regex", "value": "(a)\\1"},
            {"variable": "page_path", "op": "gt", "value": "ten"}]},
            "scrolled": {"kind": "scroll"}, "seen": {"kind": "visible"}, "pushed": {"kind": "custom_event"},
            "files": {"kind": "link", "links": "download"}},
        "tags": {"pixel": {"kind": "pixel", "triggers": ["gone"], "exceptions": ["also gone"],
                           "url": "http://tracker.example/{{nope}}"},
                 "event": {"kind": "event", "triggers": ["again"], "properties": {"a": {"var": "none"}}},
                 "html": {"kind": "html", "triggers": ["again"]}}})
    expected = [
        "variables.page_url: the name of a built-in variable",
        "variables.loop.input: 'loop' is not another variable",
        "variables.q: a query variable needs name",
        "triggers.again.conditions[0].variable: no variable 'nothing'",
        "triggers.again.conditions[2].value: gt compares with a number",
        "triggers.scrolled: a scroll trigger needs percents (for example [25, 50, 75, 100])",
        "triggers.seen: a visible trigger needs a selector",
        "triggers.pushed: a custom_event trigger needs the event's name",
        "tags.pixel.triggers: no trigger 'gone'",
        "tags.pixel.exceptions: no trigger 'also gone'",
        "tags.pixel.url: an https:// address",
        "tags.pixel.url: no variable 'nope'",
        "tags.event.event: the name of the track event",
        "tags.html.code: the HTML to place",
    ]
    for problem in expected:
        assert problem in found
    assert any(p.startswith("triggers.again.conditions[1].value: not a pattern RE2 accepts") for p in found)
    assert any("{\"var\": NAME} of a variable" in p for p in found)
    assert any("download link trigger needs extensions" in p for p in found)
    assert problems({"variables": {"a": {"kind": "lookup", "input": "b"}, "b": {"kind": "lookup", "input": "a"}}}) == [
        "variables.a.input: the lookups a → b → a go round", "variables.b.input: the lookups b → a → b go round"]
    assert "at most 200,000 bytes" in problems({"tags": {f"t{i}": {"kind": "html", "code": "x" * 19_000}
                                                         for i in range(20)}})[0]


def test_html_tags_are_named_as_custom_code():
    definition = parse_definition({"triggers": {"all": {"kind": "pageview"}}, "tags": {
        "chat": {"kind": "html", "triggers": ["all"], "code": "<script>chat()</script>"},
        "pixel": {"kind": "pixel", "triggers": ["all"], "url": "https://p.example/x.gif"}}})
    assert custom_code(definition) == ["chat"]


def test_hostile_values_are_compiled_as_data_that_reads_back_the_same():
    raw = {"variables": {"evil": {"kind": "constant", "value": HOSTILE}},
           "triggers": {"all": {"kind": "click", "selector": HOSTILE[:400]}},
           "tags": {"x": {"kind": "pixel", "triggers": ["all"], "url": "https://p.example/?v={{evil}}"}}}
    definition = parse_definition(raw)
    script = compile_container("run(__HW_CONTAINER__);", definition, "web", 3, "pk_x").decode()
    assert "</script" not in script and "\u2028" not in script and "\u2029" not in script
    embedded = json.loads(script.removeprefix("run(").removesuffix(");"))
    assert embedded == json.loads(orjson.dumps(config(definition, "web", 3, "pk_x", False)))
    assert embedded["variables"]["evil"]["value"] == HOSTILE
    with pytest.raises(ValueError):
        compile_container("no placeholder", definition, "web", 3, "pk_x")


def test_tags_are_compiled_in_the_order_they_fire():
    definition = parse_definition({"triggers": {"all": {"kind": "pageview"}}, "tags": {
        name: {"kind": "pixel", "triggers": ["all"], "url": "https://p.example/", "priority": priority}
        for name, priority in (("b", 0), ("a", 0), ("first", 10), ("last", -5))}})
    assert [name for name, _ in config(definition, "web", 1, "", False)["tags"]] == ["first", "a", "b", "last"]


def test_a_preview_token_opens_its_container_only_and_expires():
    settings = Settings(secret_key=SECRET)
    token = preview.issue(settings, "shop", "web")
    assert preview.holds(settings, token, "shop", "web")
    assert not preview.holds(settings, token, "shop", "other")
    assert not preview.holds(settings, token, "blog", "web")
    assert not preview.holds(settings, token[:-2] + "xx", "shop", "web")
    assert not preview.holds(Settings(secret_key="another-secret-key-of-thirty-two-chars"), token, "shop", "web")
    assert not preview.holds(Settings(secret_key=SECRET, tags_preview_s=-1), token, "shop", "web")
    with pytest.raises(ValueError, match="secret_key"):
        preview.issue(Settings(secret_key=""), "shop", "web")


def test_the_store_keeps_heads_and_versions_and_forgets_deleted_ones():
    store = ContainerStore(Settings())
    store.apply("shop/web", orjson.dumps({"name": "Web", "published": 1}))
    store.apply("shop/web/1", orjson.dumps({"version": 1, "definition": {}}))
    store.apply("shop/web/x", orjson.dumps({}))  # not a record this store writes
    store.apply("shop", orjson.dumps({}))
    store.apply("shop/app", b"not json")
    assert store.head("shop", "web")["published"] == 1 and store.version("shop", "web", 1)["version"] == 1
    assert [c for c, _ in store.containers("shop")] == ["web"]
    store.apply("shop/web/1", None)
    store.apply("shop/web", None)
    assert store.head("shop", "web") is None and store.version("shop", "web", 1) is None
