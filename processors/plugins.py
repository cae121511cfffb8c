"""Python transformations the operator installs, loaded by name and version.

A transformation is a function ``transform(event, context) -> event | None | list[event]``, found in:

- a module in ``transforms_dir``: the file ``order_enrich.py`` is the transformation ``order_enrich``;
  it defines ``transform`` and a ``VERSION`` string;
- an entry point of the group ``headwater.transforms`` in an installed distribution: its name is the
  transformation's, it points at the function, and the distribution's version is its version.

Loading is explicit: only these are loaded, once, when a process starts, and a module that does not
import, lacks ``transform`` or ``VERSION``, or shares a name with another, stops the start with its
problem named. The code is the operator's, trusted like Headwater's own: it runs in the processor's
process with its permissions (docs/processing.md, "Trust model").
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from headwater.transforms import NAME

ENTRY_POINT_GROUP = "headwater.transforms"
MODULE_PREFIX = "headwater_transforms_"  # the modules' names in sys.modules


@dataclasses.dataclass(frozen=True)
class Plugin:
    """One installed transformation: its name, version, function, and where it was loaded from."""

    name: str
    version: str
    function: Callable[..., Any]
    origin: str


@functools.cache
def installed(transforms_dir: str) -> tuple[dict[str, Plugin], tuple[str, ...]]:
    """The transformations in ``transforms_dir`` and the entry points, by name, and the problems found
    loading them. Loaded once per process."""
    plugins: dict[str, Plugin] = {}
    problems: list[str] = []
    found = [*_from_directory(transforms_dir, problems), *_from_entry_points(problems)]
    for plugin in found:
        if plugin.name in plugins:
            problems.append(f"transformation {plugin.name!r} is installed twice ({plugins[plugin.name].origin} "
                            f"and {plugin.origin})")
        plugins[plugin.name] = plugin
    return plugins, tuple(problems)


def _from_directory(directory: str, problems: list[str]) -> list[Plugin]:
    if not directory:
        return []
    root = Path(directory)
    if not root.is_dir():
        problems.append(f"transforms_dir {directory!r} is not a directory")
        return []
    return [plugin for path in sorted(root.glob("*.py")) if not path.name.startswith("_")
            for plugin in [_load_module(path, problems)] if plugin]


def _load_module(path: Path, problems: list[str]) -> Plugin | None:
    name = path.stem
    if not NAME.fullmatch(name):
        problems.append(f"{path}: a transformation's name is 1 to 40 letters, digits, _ or -")
        return None
    try:
        spec = importlib.util.spec_from_file_location(MODULE_PREFIX + name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except Exception as exc:  # the operator's code: any error is a problem to report, not a crash
        problems.append(f"{path}: does not load: {type(exc).__name__}: {exc}")
        return None
    function, version = getattr(module, "transform", None), getattr(module, "VERSION", None)
    if not callable(function) or not isinstance(version, str) or not version:
        problems.append(f"{path}: defines transform(event, context) and a VERSION string")
        return None
    return Plugin(name, version, function, str(path))


def _from_entry_points(problems: list[str]) -> list[Plugin]:
    plugins = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {point.name} = {point.value}"
        try:
            function = point.load()
        except Exception as exc:  # as above
            problems.append(f"{origin}: does not load: {type(exc).__name__}: {exc}")
            continue
        if not NAME.fullmatch(point.name) or not callable(function):
            problems.append(f"{origin}: a function, named by 1 to 40 letters, digits, _ or -")
            continue
        version = point.dist.version if point.dist else "unknown"
        plugins.append(Plugin(point.name, version, function, origin))
    return plugins
