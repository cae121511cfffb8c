"""The condition language of a flow's steps: which events go through a step.

A condition is a small JSON document, checked once when a project is configured and compiled into a
matcher that the mediator runs on every event of the project. It never runs a regular expression or
code a sender controls, and its work per event is bounded by the limits below. The grammar:

    condition := {"type": TYPE | [TYPE, ...]}              the call type (absent: "track")
               | {"event": NAME | [NAME, ...]}             a track event's name: exact, or a glob where
                                                           "*" matches any run of characters
               | {"field": PATH, OP: VALUE}                one field of the event, with one operator
               | {"sample": PERCENT}                       that share of visitors (0 to 100), the same
                                                           visitors every time (CRC32 of anonymousId,
                                                           else userId), so their visits stay whole
               | {"all": [condition, ...]}                 every one holds
               | {"any": [condition, ...]}                 at least one holds
               | {"not": condition}
    PATH      := ROOT ("." KEY)*   ROOT: properties, context, traits, or one of the event's own
                                   fields (event, name, userId, anonymousId, groupId, previousId)
    OP VALUE  := "equals": SCALAR | "in": [SCALAR, ...] | "exists": true|false
               | "gt" | "gte" | "lt" | "lte": NUMBER

Equality is JSON's: ``true`` equals neither ``1`` nor ``"true"``. A numeric comparison holds only when
the field is a number. A field that is absent matches only ``{"exists": false}``.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from typing import Any, TypeGuard

MAX_DEPTH = 4  # nesting of all / any / not
MAX_LEAVES = 16  # type, event and field tests in one condition
MAX_LIST = 100  # entries of a type, event or "in" list
MAX_TEXT = 200  # characters of a name, glob, path or string value
MAX_PATH_KEYS = 8
MAX_WILDCARDS = 8  # "*" in one glob
FIELD_ROOTS = ("properties", "context", "traits", "event", "name", "userId", "anonymousId", "groupId",
               "previousId")
TYPES = ("track", "page", "screen", "identify", "group", "alias")
COMPARISONS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b,
               "lte": lambda a, b: a <= b}
OPERATORS = ("equals", "in", "exists", *COMPARISONS)
TESTS = "type, event, field, sample, all, any, not"
ABSENT = object()  # what a path that leads nowhere finds
_SCALARS = frozenset({str, int, float, bool, type(None)})

Matcher = Callable[[dict[str, Any]], bool]


class ConditionError(ValueError):
    """A condition breaks the grammar or a limit; ``problems`` names each one with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclasses.dataclass
class _Compiler:
    problems: list[str] = dataclasses.field(default_factory=list)
    leaves: int = 0

    def compile(self, raw: object, where: str, depth: int = 0) -> Matcher:
        if depth > MAX_DEPTH:
            return self._fail(f"{where}: nested deeper than {MAX_DEPTH} levels")
        if not isinstance(raw, dict) or not raw:
            return self._fail(f"{where}: a condition is a JSON object such as {{\"type\": \"track\"}}")
        if "field" in raw:
            return self._field(raw, where)
        if len(raw) != 1:
            return self._fail(f"{where}: give one of {TESTS} (got {', '.join(sorted(raw))})")
        (kind, value), = raw.items()
        if kind in ("all", "any"):
            return self._combine(kind, value, f"{where}.{kind}", depth)
        if kind == "not":
            inner = self.compile(value, f"{where}.not", depth + 1)
            return lambda event: not inner(event)
        if kind == "type":
            return self._type(value, f"{where}.type")
        if kind == "event":
            return self._event(value, f"{where}.event")
        if kind == "sample":
            return self._sample(value, f"{where}.sample")
        return self._fail(f"{where}: unknown test {kind!r}; the tests are {TESTS}")

    def _sample(self, value: object, where: str) -> Matcher:
        if not self._leaf(where):
            return lambda event: False
        if not _number(value) or not 0 <= value <= 100:
            return self._fail(f"{where}: a percentage from 0 to 100")
        threshold = int(value / 100 * 2**32)

        def sampled(event: dict[str, Any]) -> bool:
            visitor = event.get("anonymousId") or event.get("userId") or ""
            return zlib.crc32(str(visitor).encode()) < threshold
        return sampled

    def _fail(self, problem: str) -> Callable[[Any], bool]:
        self.problems.append(problem)
        return lambda event: False

    def _leaf(self, where: str) -> bool:
        self.leaves += 1
        if self.leaves == MAX_LEAVES + 1:
            self.problems.append(f"{where}: more than {MAX_LEAVES} tests in one condition")
        return self.leaves <= MAX_LEAVES

    def _combine(self, kind: str, value: object, where: str, depth: int) -> Matcher:
        if not isinstance(value, list) or not value or len(value) > MAX_LIST:
            return self._fail(f"{where}: a list of 1 to {MAX_LIST} conditions")
        parts = [self.compile(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        # plain loops: a generator in all() or any() costs about a microsecond an event more
        if kind == "all":
            def every(event: dict[str, Any]) -> bool:
                for part in parts:
                    if not part(event):
                        return False
                return True
            return every

        def some(event: dict[str, Any]) -> bool:
            for part in parts:
                if part(event):
                    return True
            return False
        return some

    def _strings(self, value: object, where: str) -> list[str] | None:
        values = value if isinstance(value, list) else [value]
        strings = [v for v in values if isinstance(v, str) and 0 < len(v) <= MAX_TEXT]
        if not values or len(values) > MAX_LIST or len(strings) != len(values):
            self.problems.append(f"{where}: a string of 1 to {MAX_TEXT} characters, or a list of 1 to "
                                 f"{MAX_LIST} of them")
            return None
        return strings

    def _type(self, value: object, where: str) -> Matcher:
        types = self._strings(value, where)
        if not self._leaf(where) or types is None:
            return lambda event: False
        unknown = [t for t in types if t not in TYPES]
        if unknown:
            return self._fail(f"{where}: unknown type {unknown[0]!r}; the types are {', '.join(TYPES)}")
        wanted = frozenset(types)
        return lambda event: (event.get("type") or "track") in wanted

    def _event(self, value: object, where: str) -> Matcher:
        names = self._strings(value, where)
        if not self._leaf(where) or names is None:
            return lambda event: False
        if any(name.count("*") > MAX_WILDCARDS for name in names):
            return self._fail(f"{where}: a glob has more than {MAX_WILDCARDS} '*'")
        exact = frozenset(n for n in names if "*" not in n)
        globs = [n.split("*") for n in names if "*" in n]

        def matches(event: dict[str, Any]) -> bool:
            if (event.get("type") or "track") != "track":
                return False
            name = event.get("event")
            if not isinstance(name, str):
                return False
            return name in exact or any(glob_match(parts, name) for parts in globs)
        return matches

    def _field(self, raw: dict, where: str) -> Matcher:
        path, operators = raw["field"], [k for k in raw if k != "field"]
        keys = path.split(".") if isinstance(path, str) and 0 < len(path) <= MAX_TEXT else None
        if not self._leaf(where):
            return lambda event: False
        if keys is None or keys[0] not in FIELD_ROOTS or len(keys) > MAX_PATH_KEYS or not all(keys):
            return self._fail(f"{where}.field: a path such as properties.plan or context.library.name, "
                              f"starting at one of {', '.join(FIELD_ROOTS)}, at most {MAX_PATH_KEYS} keys")
        if len(operators) != 1 or operators[0] not in OPERATORS:
            return self._fail(f"{where}: give exactly one operator of {', '.join(OPERATORS)} beside field")
        operator = operators[0]
        test = self._operator(operator, raw[operator], f"{where}.{operator}")
        if len(keys) == 2:  # most paths (properties.plan): one closure, no loop
            root, name = keys

            def at_two(event: dict[str, Any]) -> bool:
                parent = event.get(root)
                return test(parent.get(name, ABSENT) if type(parent) is dict else ABSENT)
            return at_two
        return lambda event: test(lookup(event, keys))

    def _operator(self, operator: str, value: object, where: str) -> Callable[[object], bool]:
        if operator == "exists":
            if not isinstance(value, bool):
                return self._fail(f"{where}: true or false")
            return (lambda found: found is not ABSENT) if value else (lambda found: found is ABSENT)
        if operator == "equals":
            if not _scalar(value):
                return self._fail(f"{where}: a string (at most {MAX_TEXT} characters), number, boolean or null")
            kind = _kind(value)
            return lambda found: found == value and _kind(found) == kind
        if operator == "in":
            if not isinstance(value, list) or not 0 < len(value) <= MAX_LIST or not all(map(_scalar, value)):
                return self._fail(f"{where}: a list of 1 to {MAX_LIST} strings, numbers, booleans or nulls")
            wanted = {(v, _kind(v)) for v in value}  # one lookup whatever the list's length
            return lambda found: type(found) in _SCALARS and (found, _kind(found)) in wanted
        if not _number(value):
            return self._fail(f"{where}: a number")
        compare = COMPARISONS[operator]
        return lambda found: _number(found) and compare(found, value)


def compile_condition(raw: object, where: str = "when") -> Matcher:
    """The matcher of ``raw``; raises :class:`ConditionError` naming every problem."""
    compiler = _Compiler()
    matcher = compiler.compile(raw, where)
    if compiler.problems:
        raise ConditionError(compiler.problems)
    return matcher


def lookup(event: dict[str, Any], keys: list[str]) -> object:
    """The value at ``keys`` in the event, or the absent marker."""
    value: object = event
    for key in keys:
        if not isinstance(value, dict):
            return ABSENT
        value = value.get(key, ABSENT)
        if value is ABSENT:
            return ABSENT
    return value


def glob_match(parts: list[str], text: str) -> bool:
    """Whether ``text`` matches the glob split at its ``*``s. Linear in the text for each part: the
    first part is a prefix, the last a suffix, and each middle part is found leftmost after the one
    before (leftmost is always safe when ``*`` is the only wildcard)."""
    first, last = parts[0], parts[-1]
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for part in parts[1:-1]:
        found = text.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= MAX_TEXT)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: object) -> type:
    """What JSON equality tells apart: a boolean is not a number, and 1 equals 1.0."""
    kind = type(value)
    return float if kind is int else kind
