"""A tag manager container's definition: variables, triggers and tags, as data (GTM's semantics).

A definition is checked here and compiled into one script (:mod:`headwater.tags.compile`): the runtime
(``sdks/js/src/tm.js``) with the definition as a JSON literal. Nothing a definition holds is ever
spliced into JavaScript source; only a ``html`` tag's code runs as code, and only admins write
containers.

**Variables** (``variables``, by name) read a value on the page: ``url`` (a ``part`` of the page's
address), ``query`` (a parameter), ``referrer``, ``cookie``, ``data_layer`` (a dotted ``key`` of the
merged ``window.hwDataLayer``), ``element`` (the text or an ``attribute`` of the event's element, or
of the first one matching ``selector``), ``constant`` and ``lookup`` (``input`` variable through a
``table``, else ``default``). Built in: :data:`BUILT_IN`.

**Triggers** (``triggers``, by name) say when: a ``kind`` of :data:`TRIGGER_KINDS`, its options, and
``conditions`` on variables that must all hold.

**Tags** (``tags``, by name) say what: a ``kind`` of :data:`TAG_KINDS`, fired by any of its
``triggers`` unless one of its ``exceptions`` matches the same event; ``fire`` (once per event, the
default, or once per page), ``priority`` (higher first) and ``consent`` (a category that
must be granted, ``""`` for none).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
import re2

NAME = r"^[A-Za-z][A-Za-z0-9_ .-]{0,63}$"
Name = Annotated[str, msgspec.Meta(pattern=NAME)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
Selector = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
MAX_ITEMS = 100
MAX_CODE = 20_000
MAX_DEFINITION_BYTES = 200_000  # as Google Tag Manager caps a container
BUILT_IN = ("event", "page_url", "page_host", "page_path", "page_query", "referrer", "element_text", "element_url",
            "element_id", "element_classes", "scroll_percent")
URL_PARTS = ("href", "protocol", "host", "path", "query", "fragment")
OPERATORS = ("equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "regex", "not_regex",
             "gt", "lt", "exists")
TRIGGER_KINDS = ("pageview", "click", "link", "form_submit", "custom_event", "timer", "scroll", "visible")
TAG_KINDS = ("event", "pixel", "script", "html")


class Condition(msgspec.Struct, forbid_unknown_fields=True):
    variable: Name
    op: Literal["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "regex",
                "not_regex", "gt", "lt", "exists"]
    value: Text = ""


class Variable(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["url", "query", "referrer", "cookie", "data_layer", "element", "constant", "lookup"]
    part: Literal["href", "protocol", "host", "path", "query", "fragment"] = "href"  # url
    name: Text = ""  # query, cookie
    key: Text = ""  # data_layer
    attribute: Text = ""  # element: "" for its text
    selector: Text = ""  # element: the first match on the page instead of the event's element
    value: Text = ""  # constant
    input: str = ""  # lookup: the variable looked up
    table: dict[Text, Text] = {}  # lookup
    default: Text = ""  # lookup


class Trigger(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["pageview", "click", "link", "form_submit", "custom_event", "timer", "scroll", "visible"]
    selector: Text = ""  # click, form_submit, visible: the element (closest ancestor for clicks)
    links: Literal["all", "outbound", "download"] = "all"  # link
    extensions: list[Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9]{1,10}$")]] = []  # link: download
    event: Text = ""  # custom_event: the pushed event's name
    interval_ms: Annotated[int, msgspec.Meta(ge=100, le=86_400_000)] = 1000  # timer
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1  # timer: how many times at most
    percents: list[Annotated[int, msgspec.Meta(ge=1, le=100)]] = []  # scroll
    ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5  # visible: the share of the element in view
    conditions: list[Condition] = []


Value = str | dict[str, str]  # a literal, or {"var": NAME}


class Tag(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["event", "pixel", "script", "html"]
    triggers: list[Name] = []
    exceptions: list[Name] = []
    fire: Literal["once_per_event", "once_per_page"] = "once_per_event"
    priority: Annotated[int, msgspec.Meta(ge=-1000, le=1000)] = 0
    consent: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{0,32}$")] = ""
    type: Literal["track", "page", "identify"] = "track"  # event
    event: Text = ""  # event: a track's name
    user_id: Value = ""  # event: identify
    properties: dict[Text, Value] = {}  # event: properties (track, page) or traits (identify)
    url: Text = ""  # pixel, script: https only; {{variable}} places a variable's value, URL-encoded
    code: Annotated[str, msgspec.Meta(max_length=MAX_CODE)] = ""  # html: admins' own HTML and scripts


class Definition(msgspec.Struct, forbid_unknown_fields=True):
    variables: dict[Name, Variable] = {}
    triggers: dict[Name, Trigger] = {}
    tags: dict[Name, Tag] = {}


class DefinitionError(ValueError):
    """A definition with problems; ``problems`` names each with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


PARTS: dict[str, type] = {"variables": Variable, "triggers": Trigger, "tags": Tag}


def parse_definition(raw: object) -> Definition:
    """A checked definition; raises :class:`DefinitionError` naming every problem found."""
    try:
        size = len(msgspec.json.encode(raw))
    except (TypeError, msgspec.EncodeError) as exc:
        raise DefinitionError([f"not JSON: {exc}"]) from exc
    if size > MAX_DEFINITION_BYTES:
        raise DefinitionError([f"a container's definition is at most {MAX_DEFINITION_BYTES:,} bytes of JSON"])
    if not isinstance(raw, dict):
        raise DefinitionError(["a definition is an object: variables, triggers and tags"])
    problems = [f"{key} is not a part of a definition (variables, triggers, tags)" for key in raw if key not in PARTS]
    parts: dict[str, dict] = {}
    for part, kind in PARTS.items():
        items = raw.get(part, {})
        if not isinstance(items, dict) or len(items) > MAX_ITEMS:
            problems.append(f"{part} is an object of at most {MAX_ITEMS} entries, by name")
            continue
        parts[part] = {}
        for name, item in items.items():
            if not re.fullmatch(NAME, name):
                problems.append(f"{part}.{name[:80]!r}: a name is a letter, then up to 63 letters, digits, "
                                "spaces, '_', '.' or '-'")
                continue
            try:
                parts[part][name] = msgspec.convert(item, kind)
            except msgspec.ValidationError as exc:
                problems.append(_where(f"{part}.{name}", str(exc)))
    if problems:
        raise DefinitionError(problems)
    definition = Definition(**parts)
    problems = _references(definition)
    if problems:
        raise DefinitionError(problems)
    return definition


def _where(prefix: str, message: str) -> str:
    """msgspec's ``message - at `$.path``` as ``prefix.path: message``."""
    text, _, path = message.partition(" - at `$")
    return f"{prefix}{path.rstrip('`')}: {text}"


def _references(d: Definition) -> list[str]:
    problems = []
    known = set(d.variables) | set(BUILT_IN)
    clash = sorted(set(d.variables) & set(BUILT_IN))
    problems += [f"variables.{name}: the name of a built-in variable" for name in clash]
    for name, variable in d.variables.items():
        problems += _variable(name, variable, known) or _cycle(name, d.variables)
    for name, trigger in d.triggers.items():
        problems += _trigger(name, trigger, known)
    for name, tag in d.tags.items():
        problems += _tag(name, tag, d, known)
    return problems


def _variable(name: str, v: Variable, known: set[str]) -> list[str]:
    where = f"variables.{name}"
    needs = {"query": "name", "cookie": "name", "data_layer": "key", "lookup": "input"}
    if v.kind in needs and not getattr(v, needs[v.kind]):
        return [f"{where}: a {v.kind} variable needs {needs[v.kind]}"]
    if v.kind == "lookup" and (v.input not in known or v.input == name):
        return [f"{where}.input: {v.input!r} is not another variable"]
    return []


def _cycle(name: str, variables: dict[str, Variable]) -> list[str]:
    """A lookup whose inputs lead back to it would never end."""
    seen, at = [name], variables[name]
    while at.kind == "lookup" and at.input in variables:
        if at.input in seen:
            return [f"variables.{name}.input: the lookups {' → '.join([*seen, at.input])} go round"]
        seen.append(at.input)
        at = variables[at.input]
    return []


def _conditions(where: str, conditions: list[Condition], known: set[str]) -> list[str]:
    problems = []
    for i, c in enumerate(conditions):
        if c.variable not in known:
            problems.append(f"{where}.conditions[{i}].variable: no variable {c.variable!r}")
        if c.op in ("regex", "not_regex"):
            problems += _regex(f"{where}.conditions[{i}].value", c.value)
        if c.op in ("gt", "lt") and not re.fullmatch(r"-?\d+(\.\d+)?", c.value):
            problems.append(f"{where}.conditions[{i}].value: {c.op} compares with a number")
    return problems


def _regex(where: str, pattern: str) -> list[str]:
    """A pattern must be one RE2 takes (no backreferences or lookaround), so it runs in linear time in
    RE2, and in the browser's engine it keeps to the syntax both share."""
    if len(pattern) > 500:
        return [f"{where}: a pattern is at most 500 characters"]
    try:
        re2.compile(pattern)
    except re2.error as exc:
        return [f"{where}: not a pattern RE2 accepts ({exc})"]
    return []


def _trigger(name: str, t: Trigger, known: set[str]) -> list[str]:
    where = f"triggers.{name}"
    problems = _conditions(where, t.conditions, known)
    if t.kind in ("visible",) and not t.selector:
        problems.append(f"{where}: a visible trigger needs a selector")
    if t.kind == "custom_event" and not t.event:
        problems.append(f"{where}: a custom_event trigger needs the event's name")
    if t.kind == "scroll" and not t.percents:
        problems.append(f"{where}: a scroll trigger needs percents (for example [25, 50, 75, 100])")
    if t.kind == "link" and t.links == "download" and not t.extensions:
        problems.append(f"{where}: a download link trigger needs extensions (for example [\"pdf\", \"zip\"])")
    return problems


def _tag(name: str, tag: Tag, d: Definition, known: set[str]) -> list[str]:
    where = f"tags.{name}"
    problems = [f"{where}.{part}: no trigger {t!r}" for part in ("triggers", "exceptions")
                for t in getattr(tag, part) if t not in d.triggers]
    if not tag.triggers:
        problems.append(f"{where}: a tag needs at least one trigger")
    values = [tag.user_id, *tag.properties.values()]
    for value in values:
        if isinstance(value, dict) and (set(value) != {"var"} or value["var"] not in known):
            problems.append(f"{where}: a value is a text or {{\"var\": NAME}} of a variable, not {value!r}")
    if tag.kind in ("pixel", "script"):
        if not tag.url.startswith("https://"):
            problems.append(f"{where}.url: an https:// address")
        problems += [f"{where}.url: no variable {ref!r}" for ref in re.findall(r"\{\{([^}]*)\}\}", tag.url)
                     if ref not in known]
    if tag.kind == "html" and not tag.code.strip():
        problems.append(f"{where}.code: the HTML to place")
    if tag.kind == "event" and tag.type == "track" and not tag.event:
        problems.append(f"{where}.event: the name of the track event")
    return problems


def custom_code(definition: Definition) -> list[str]:
    """The names of the tags that run code of their own (``html``): only admins may write them."""
    return [name for name, tag in definition.tags.items() if tag.kind == "html"]
