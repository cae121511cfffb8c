"""Conditions on any property of an event, custom ones included: ``properties.plan:eq:pro``.

A condition is ``KEY:OPERATOR:VALUE`` (in a dashboard URL as ``where=…``, repeatable; on the command
line as ``--where …``). The key is ``properties.`` followed by a property's path (``properties.plan``,
``properties.order.total``: a dot between levels), or one of the event's own columns
(:data:`COLUMNS`). Operators:

=============  ==========================================================================
``eq``, ``ne``  equal, not equal (a number or boolean compares as its JSON: ``5``, ``true``, ``127.0`` as ``127``)
``contains``    contains the value (``not_contains``: does not)
``regex``       matches the RE2 regular expression (ClickHouse's ``match``, linear in the text)
``in``          one of the comma-separated values (``not_in``: none of them)
``set``         the property is present (``not_set``: absent); no value
``gt`` … ``lte``  a numeric compare (properties only): ``gt``, ``gte``, ``lt``, ``lte``
=============  ==========================================================================

Every key and value reaches ClickHouse as a query parameter, never as SQL text.
"""

from __future__ import annotations

import dataclasses
import math

import re2

from analytics.channels import CHANNEL_SQL

COLUMNS = ("event", "type", "name", "browser", "os", "device", "country", "region", "city", "url_host", "url_path",
           "referrer_host", "referrer_source", "referrer_medium", "utm_source", "utm_medium", "utm_campaign", "channel",
           "gclid", "fbclid", "msclkid")
# keys that are an expression over the columns, not a column
VIRTUAL = {"channel": CHANNEL_SQL}
PROPERTIES = "properties."
TEXT_OPERATORS = ("eq", "ne", "contains", "not_contains", "regex", "in", "not_in")
PRESENCE_OPERATORS = ("set", "not_set")
NUMERIC_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPERATORS = (*TEXT_OPERATORS, *PRESENCE_OPERATORS, *NUMERIC_OPERATORS)
MAX_DEPTH = 5
MAX_SEGMENT = 100
MAX_VALUE = 1000
MAX_VALUES = 100
MAX_CONDITIONS = 10


class ConditionError(ValueError):
    """A condition that cannot be applied; the message says which part and why."""


@dataclasses.dataclass(frozen=True)
class Condition:
    key: str
    op: str
    value: str = ""

    @property
    def path(self) -> tuple[str, ...]:
        """A property's levels (empty for a column)."""
        return tuple(self.key[len(PROPERTIES):].split(".")) if self.key.startswith(PROPERTIES) else ()

    def __str__(self) -> str:
        return f"{self.key}:{self.op}:{self.value}" if self.op not in PRESENCE_OPERATORS else f"{self.key}:{self.op}"

    def sql(self, name: str) -> tuple[str, dict]:
        """The condition as SQL on ``events`` and its parameters, each named ``{name}_…``."""
        text, params = value_sql(self.key, name)
        if self.path:
            keys = path_args(self.key, name)
            present = f"({may_have(name)} AND JSONHas(properties, {keys}))"
            number = f"JSONExtractFloat(properties, {keys})"
        else:
            present, number = f"{self.key} != ''", ""
        value = f"%({name}_v)s"
        if self.op in ("in", "not_in"):
            params[f"{name}_v"] = tuple(v.strip() for v in self.value.split(","))
        elif self.op in NUMERIC_OPERATORS:
            params[f"{name}_v"] = float(self.value)
        elif self.op not in PRESENCE_OPERATORS:
            params[f"{name}_v"] = self.value
        sql = {
            "eq": f"{present} AND {text} = {value}",
            "ne": f"NOT ({present} AND {text} = {value})",
            "contains": f"position({text}, {value}) > 0",
            "not_contains": f"position({text}, {value}) = 0",
            "regex": f"match({text}, {value})",
            "in": f"{present} AND {text} IN {value}",
            "not_in": f"NOT ({present} AND {text} IN {value})",
            "set": present,
            "not_set": f"NOT {present}",
        }.get(self.op) or f"{present} AND {number} {NUMERIC_OPERATORS[self.op]} {value}"
        return f"({sql})", params


def may_have(name: str) -> str:
    """SQL that is false only for an event whose properties cannot hold the key of :func:`value_sql`'s
    ``{name}_needle``: text without a backslash is JSON without escapes, in which a key is written as
    it is, so neither the quoted name nor a backslash means the key is absent and there is nothing to
    parse (a quarter of a property breakdown's time on 10 M events)."""
    return f"(position(properties, %({name}_needle)s) > 0 OR position(properties, '\\\\') > 0)"


def path_args(key: str, name: str) -> str:
    """The JSON path of a property key (``properties.a.b``) as the arguments of a JSON function: the
    parameters ``{name}_k0`` … that :func:`value_sql` sets."""
    return ", ".join(f"%({name}_k{i})s" for i in range(len(key[len(PROPERTIES):].split("."))))


def value_sql(key: str, name: str) -> tuple[str, dict]:
    """A key's value on each event as text, and its parameters (``{name}_k0`` …, ``{name}_needle``): a
    column as it is; a property as its text when it is a string, else its JSON (``5``, ``true``; ``''``
    when absent or ``null``)."""
    if not key.startswith(PROPERTIES):
        return VIRTUAL.get(key, key), {}
    path = key[len(PROPERTIES):].split(".")
    keys = path_args(key, name)
    params = {f"{name}_k{i}": part for i, part in enumerate(path)}
    params[f"{name}_needle"] = f'"{path[-1]}"'
    # (read as Dynamic: one parse, a third faster on 10 M events than testing the type first)
    return f"if({may_have(name)}, toString(JSONExtract(properties, {keys}, 'Dynamic')), '')", params


def check_key(key: str) -> str:
    """``key`` when it is ``properties.PATH`` or a column, else :class:`ConditionError` saying why."""
    if key.startswith(PROPERTIES):
        parts = key[len(PROPERTIES):].split(".")
        if len(parts) > MAX_DEPTH or any(not p or len(p) > MAX_SEGMENT for p in parts):
            raise ConditionError(f"{key[:120]!r}: a property path has 1 to {MAX_DEPTH} non-empty levels of at most "
                                 f"{MAX_SEGMENT} characters")
    elif key not in COLUMNS:
        raise ConditionError(f"{key[:120]!r}: a key is properties.NAME or one of {', '.join(COLUMNS)}")
    return key


def parse(text: str) -> Condition:
    """``KEY:OPERATOR[:VALUE]`` as a :class:`Condition`, or :class:`ConditionError` saying what is wrong."""
    if not isinstance(text, str) or len(text) > 2 * MAX_VALUE:
        raise ConditionError(f"a condition is KEY:OPERATOR:VALUE of at most {2 * MAX_VALUE} characters")
    key, _, rest = text.strip().partition(":")
    op, _, value = rest.partition(":")
    return check(Condition(key.strip(), op.strip(), value))


def check(condition: Condition) -> Condition:
    key, op, value = check_key(condition.key), condition.op, condition.value
    if op not in OPERATORS:
        raise ConditionError(f"{key}: the operator must be one of {', '.join(OPERATORS)}, not {op[:40]!r}")
    if op in NUMERIC_OPERATORS and not key.startswith(PROPERTIES):
        raise ConditionError(f"{key}: numeric compares apply to properties only")
    if op in PRESENCE_OPERATORS and value:
        raise ConditionError(f"{key}:{op} takes no value")
    if len(value) > MAX_VALUE:
        raise ConditionError(f"{key}: a value has at most {MAX_VALUE} characters")
    if op in ("in", "not_in") and len(value.split(",")) > MAX_VALUES:
        raise ConditionError(f"{key}: {op} takes at most {MAX_VALUES} values")
    if op in NUMERIC_OPERATORS:
        try:
            finite = math.isfinite(float(value))
        except ValueError:
            finite = False
        if not finite:
            raise ConditionError(f"{key}:{op} needs a number, not {value[:40]!r}")
    if op == "regex":
        try:
            re2.compile(value)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise ConditionError(f"{key}: not a valid RE2 regular expression: {reason}") from exc
    return condition
