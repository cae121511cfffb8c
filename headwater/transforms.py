"""Declarative transformations: what a flow's ``transform`` step does to an event, written as data.

A transform step is one entry of a project's flow (:mod:`headwater.flow`)::

    {"step": "transform", "name": NAME, "when": condition, "do": [operation, ...]}
    {"step": "transform", "name": NAME, "when": condition, "python": PLUGIN}

``NAME`` (letters, digits, ``_`` and ``-``, at most 40) names the step in the routing slip
(``transform:NAME``), in dead letters and in each event's lineage; ``when`` is optional. ``python``
names a transformation the operator installed (:mod:`headwater.plugins`); ``do`` lists operations,
applied in order, each a JSON object:

    {"set": PATH, "value": VALUE}                     set a field (created with its parents)
    {"rename": PATH, "to": PATH}                      move a field; nothing happens when it is absent
    {"copy": PATH, "to": PATH}                        copy a field; nothing happens when it is absent
    {"drop": PATH | [PATH, ...]}                      remove fields
    {"lookup": PATH, "table": {KEY: VALUE, ...},      replace a field's value by the table's entry for it
     "to": PATH, "default": VALUE}                    ("to": write it elsewhere; "default": for a value
                                                      not in the table, else the field is left alone)
    {"sample": PERCENT}                               keep that share of visitors (as the condition does)
    {"drop_if": condition}                            drop the event when the condition holds

A ``PATH`` is a condition's path (:mod:`headwater.conditions`): ``properties``, ``context`` or ``traits``
and at least one key below it, or one of the event's own fields (``event``, ``name``, ``userId``,
``anonymousId``, ``groupId``, ``previousId``). ``messageId``, ``type`` and the timestamps cannot be
written: they are the event's identity and time. A write whose parent exists but is not an object
does nothing. Table keys are strings; a field's number or boolean is looked up as its JSON text.
The limits keep one project's flow from slowing the others: at most 32 operations, 1,000 table
entries, and values of at most 1,000 bytes as JSON.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from headwater.conditions import ABSENT, FIELD_ROOTS, MAX_PATH_KEYS, ConditionError, compile_condition, lookup

MAX_OPERATIONS = 32
MAX_TABLE = 1_000
MAX_VALUE_BYTES = 1_000
NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
OBJECT_ROOTS = ("properties", "context", "traits")
OPERATIONS = ("set", "rename", "copy", "drop", "lookup", "sample", "drop_if")

Operation = Callable[[dict[str, Any]], bool]  # changes the event in place; False: drop it


class TransformError(ValueError):
    """A transformation breaks the grammar or a limit; ``problems`` names each with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def compile_operations(raw: object, where: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    """The transformation of the ``do`` list ``raw``: the event changed in place, or ``None`` when an
    operation drops it. Raises :class:`TransformError` naming every problem."""
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_OPERATIONS:
        raise TransformError([f"{where}: a list of 1 to {MAX_OPERATIONS} operations"])
    operations, problems = [], []
    for i, item in enumerate(raw):
        try:
            operations.append(_operation(item, f"{where}[{i}]"))
        except TransformError as exc:
            problems += exc.problems
    if problems:
        raise TransformError(problems)

    def apply(event: dict[str, Any]) -> dict[str, Any] | None:
        for operation in operations:
            if not operation(event):
                return None
        return event
    return apply


def version_of(raw: object) -> str:
    """A declarative transformation's version in lineage: a checksum of its document."""
    return "d" + format(zlib.crc32(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)), "08x")


def _operation(item: object, where: str) -> Operation:
    kind = next((key for key in OPERATIONS if isinstance(item, dict) and key in item), None)
    if kind is None:
        raise TransformError([f"{where}: an object with one of {', '.join(OPERATIONS)}"])
    assert isinstance(item, dict)
    allowed = {"set": {"value"}, "rename": {"to"}, "copy": {"to"}, "lookup": {"table", "to", "default"}}
    extra = set(item) - {kind} - allowed.get(kind, set())
    if extra:
        raise TransformError([f"{where}: {kind} takes no {', '.join(sorted(extra))}"])
    return _BUILDERS[kind](item, f"{where}.{kind}")


def _path(raw: object, where: str) -> list[str]:
    keys = raw.split(".") if isinstance(raw, str) else []
    if not keys or not all(keys) or len(keys) > MAX_PATH_KEYS or keys[0] not in FIELD_ROOTS or \
            (keys[0] in OBJECT_ROOTS) != (len(keys) > 1):
        raise TransformError([f"{where}: a path such as properties.plan (a key below properties, context or "
                              f"traits, at most {MAX_PATH_KEYS} keys) or one of "
                              f"{', '.join(r for r in FIELD_ROOTS if r not in OBJECT_ROOTS)}"])
    return keys


def _value(raw: object, where: str) -> Callable[[], Any]:
    """A maker of fresh copies of ``raw``, so that no two events share an object or list."""
    try:
        encoded = orjson.dumps(raw)
    except TypeError as exc:
        raise TransformError([f"{where}: not a JSON value ({exc})"]) from None
    if len(encoded) > MAX_VALUE_BYTES:
        raise TransformError([f"{where}: more than {MAX_VALUE_BYTES} bytes as JSON"])
    if isinstance(raw, (dict, list)):
        return lambda: orjson.loads(encoded)
    return lambda: raw


def _parent(event: dict[str, Any], keys: list[str], create: bool) -> dict[str, Any] | None:
    """The object holding the last key, created when absent (with ``create``); ``None`` when a parent
    on the way is not an object."""
    if len(keys) == 2:  # most paths (properties.plan): no loop
        node = event.get(keys[0])
        if node is None and create:
            node = event[keys[0]] = {}
        return node if type(node) is dict else None
    node = event
    for key in keys[:-1]:
        child = node.get(key)
        if child is None and create:
            child = node[key] = {}
        if type(child) is not dict:
            return None
        node = child
    return node


def _write(event: dict[str, Any], keys: list[str], value: Any) -> None:
    parent = _parent(event, keys, create=True)
    if parent is not None:
        parent[keys[-1]] = value


def _pop(event: dict[str, Any], keys: list[str]) -> object:
    parent = _parent(event, keys, create=False)
    return ABSENT if parent is None else parent.pop(keys[-1], ABSENT)


def _set(item: dict, where: str) -> Operation:
    keys = _path(item["set"], where)
    if "value" not in item:
        raise TransformError([f"{where}: give the value beside set"])
    value = _value(item["value"], f"{where}.value")

    def operation(event: dict[str, Any]) -> bool:
        _write(event, keys, value())
        return True
    return operation


def _move(item: dict, where: str, keep: bool) -> Operation:
    kind = "copy" if keep else "rename"
    source, target = _path(item[kind], where), _path(item.get("to"), f"{where}.to")

    def operation(event: dict[str, Any]) -> bool:
        found = lookup(event, source) if keep else _pop(event, source)
        if found is not ABSENT:
            _write(event, target, orjson.loads(orjson.dumps(found)) if keep and isinstance(found, (dict, list))
                   else found)
        return True
    return operation


def _drop(item: dict, where: str) -> Operation:
    raw = item["drop"] if isinstance(item["drop"], list) else [item["drop"]]
    if not 0 < len(raw) <= MAX_OPERATIONS:
        raise TransformError([f"{where}: a path or a list of 1 to {MAX_OPERATIONS} paths"])
    paths = [_path(path, f"{where}[{i}]") for i, path in enumerate(raw)]

    def operation(event: dict[str, Any]) -> bool:
        for keys in paths:
            _pop(event, keys)
        return True
    return operation


def _lookup(item: dict, where: str) -> Operation:
    source = _path(item["lookup"], where)
    target = _path(item["to"], f"{where}.to") if "to" in item else source
    table = item.get("table")
    if not isinstance(table, dict) or not 0 < len(table) <= MAX_TABLE:
        raise TransformError([f"{where}.table: an object of 1 to {MAX_TABLE} entries"])
    if len(orjson.dumps(table)) > MAX_TABLE * MAX_VALUE_BYTES // 10:
        raise TransformError([f"{where}.table: more than {MAX_TABLE * MAX_VALUE_BYTES // 10} bytes as JSON"])
    values = {key: _value(value, f"{where}.table[{key!r}]") for key, value in table.items()}
    default = _value(item["default"], f"{where}.default") if "default" in item else None

    def operation(event: dict[str, Any]) -> bool:
        found = lookup(event, source)
        if found is ABSENT or isinstance(found, (dict, list)):
            return True
        key = found if isinstance(found, str) else orjson.dumps(found).decode()
        make = values.get(key, default)
        if make is not None:
            _write(event, target, make())
        return True
    return operation


def _condition(raw: object, where: str) -> Callable[[dict[str, Any]], bool]:
    try:
        return compile_condition(raw, where)
    except ConditionError as exc:
        raise TransformError(exc.problems) from None


def _sample(item: dict, where: str) -> Operation:
    return _condition({"sample": item["sample"]}, where.removesuffix(".sample"))


def _drop_if(item: dict, where: str) -> Operation:
    holds = _condition(item["drop_if"], where)
    return lambda event: not holds(event)


_BUILDERS: dict[str, Callable[[dict, str], Operation]] = {
    "set": _set, "rename": lambda item, where: _move(item, where, keep=False),
    "copy": lambda item, where: _move(item, where, keep=True), "drop": _drop, "lookup": _lookup,
    "sample": _sample, "drop_if": _drop_if,
}
