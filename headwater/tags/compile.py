"""A container compiled into the one script the collector serves: the runtime (``sdks/js/src/tm.js``,
built to ``hw-tm.js``) with the definition as a JSON literal in place of :data:`PLACEHOLDER`.

The definition goes in as data only: JSON is a JavaScript expression, and ``<``, U+2028 and U+2029
are escaped in it, so no name, selector or value can end the literal, a ``<script>`` element around
it, or a line in an older engine.
"""

from __future__ import annotations

import msgspec
import orjson

from headwater.tags.model import Definition

PLACEHOLDER = "__HW_CONTAINER__"


def config(definition: Definition, container: str, version: int | None, key: str, preview: bool,
           expired: bool = False) -> dict:
    """What the runtime reads (``C`` in tm.js): triggers and tags as ``[name, entry]`` pairs, the tags
    in the order they fire (priority, then name)."""
    tags = sorted(definition.tags.items(), key=lambda item: (-item[1].priority, item[0]))
    return {"c": container, "v": version, "key": key, "preview": preview, "expired": expired,
            "variables": msgspec.to_builtins(definition.variables),
            "triggers": [[name, msgspec.to_builtins(t)] for name, t in definition.triggers.items()],
            "tags": [[name, msgspec.to_builtins(tag)] for name, tag in tags]}


def literal(value: object) -> str:
    """``value`` as a JavaScript expression that cannot break out of itself."""
    return (orjson.dumps(value).decode().replace("<", "\\u003c").replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029"))


def compile_container(runtime: str, definition: Definition, container: str, version: int | None, key: str,
                      preview: bool = False, expired: bool = False) -> bytes:
    """The container's script: ``runtime`` (the built hw-tm.js) with its configuration."""
    if runtime.count(PLACEHOLDER) != 1:
        raise ValueError(f"the tag manager runtime must hold {PLACEHOLDER} once")
    return runtime.replace(PLACEHOLDER, literal(config(definition, container, version, key, preview, expired))).encode()
