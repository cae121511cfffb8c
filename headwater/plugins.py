"""Python transformations the operator installs: loaded by name and version, and run within a budget.

A transformation is a function ``transform(event, context) -> event | None | list[event]``, found in:

- a module in ``transforms_dir``: the file ``order_enrich.py`` is the transformation ``order_enrich``;
  it defines ``transform`` and a ``VERSION`` string;
- an entry point of the group ``headwater.transforms`` in an installed distribution: its name is the
  transformation's, it points at the function, and the distribution's version is its version.

Loading is explicit: only these are loaded, once, when a process starts, and a module that does not
import, lacks ``transform`` or ``VERSION``, or shares a name with another, stops the start with its
problem named. The code is the operator's, trusted like Headwater's own: it runs in the process that
calls it (the transform step's, or the forwarder's for a destination), with its permissions
(docs/processing.md, "Trust model").

:func:`run_plugin` runs one on one event within a budget (SIGALRM on the main thread), and
:func:`plugin_events` checks what it returned; their failures are typed ``Rejected`` errors, for the
caller to dead-letter.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import importlib.util
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from headwater.deadletter import Rejected
from headwater.transforms import NAME

ENTRY_POINT_GROUP = "headwater.transforms"
MAX_SPLIT = 100  # events one Python transformation may make of one
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


class TransformContext(NamedTuple):
    """What a Python transformation is told about the event besides the event itself (a named tuple:
    about a fifth of a frozen dataclass's cost to make, once per event)."""

    project_id: str
    message_id: str
    received_at_ms: int
    step: str  # the transform step's name in the flow
    version: str  # the transformation's version, as lineage records it


class TransformTimeout(BaseException):  # not an Exception, so that `except Exception` lets it by
    """Raised inside a Python transformation that overran its budget."""


def run_plugin(plugin: Plugin, event: dict[str, Any], context: TransformContext, budget_s: float) -> object:
    """``plugin`` on ``event`` within ``budget_s``; raises ``Rejected`` (``transform_timeout``,
    ``transform_error``) when it overran or raised."""
    started = time.perf_counter()
    try:
        result = call_with_budget(plugin.function, event, context, budget_s)
    except TransformTimeout:
        raise Rejected("transform_timeout", f"{plugin.name} took more than {budget_s * 1000:g} ms") from None
    except Exception as exc:  # the operator's code: whatever it raises is the event's dead letter
        raise Rejected("transform_error", f"{type(exc).__name__}: {exc} ({last_frame(exc)})") from None
    if time.perf_counter() - started > budget_s:
        raise Rejected("transform_timeout", f"{plugin.name} took more than {budget_s * 1000:g} ms")
    return result


def last_frame(exc: BaseException) -> str:
    """Where ``exc`` was raised: file name, line, function and the line's text."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "no traceback"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}: {(frame.line or '').strip()}"


def plugin_events(result: object, max_bytes: int) -> list[dict[str, Any]]:
    """The transformation's events; raises ``Rejected`` when its result is not events."""
    events = [] if result is None else [result] if type(result) is dict else result
    if type(events) is not list or len(events) > MAX_SPLIT or \
            (len(events) > 1 and not all(isinstance(e, dict) for e in events)) or \
            (len(events) == 1 and not isinstance(events[0], dict)):
        raise Rejected("transform_output", f"returned {type(result).__name__}: return an event (a dict), None, "
                                           f"or a list of at most {MAX_SPLIT} events")
    for event in events:
        try:
            size = len(orjson.dumps(event))
        except TypeError as exc:
            raise Rejected("transform_output", f"an event that is not JSON: {exc}") from None
        if size > max_bytes:
            raise Rejected("transform_output", f"an event of {size} bytes; the limit is {max_bytes}", "")
    return events


_running = False  # a transformation runs under the budget's alarm
_handling = False  # the alarm's handler is installed (reading it back, signal.getsignal, costs 7 µs)


def _alarm(signum: int, frame: object) -> None:
    if _running:
        raise TransformTimeout


def call_with_budget(function: Callable[..., Any], event: dict[str, Any], context: TransformContext,
                     budget_s: float) -> object:
    """``function(event, context)``, interrupted after ``budget_s`` (wall clock: a transformation that
    waits stalls the pipeline as much as one that computes) when called on the main thread (elsewhere
    the caller checks the time it took). Python's garbage collector is held off during the call."""
    global _running, _handling
    collecting = gc.isenabled()
    if collecting:  # a collection of the whole process's objects must not count against one event's budget
        gc.disable()
    try:
        if threading.current_thread() is not threading.main_thread():
            return function(event, context)
        if not _handling:
            signal.signal(signal.SIGALRM, _alarm)
            _handling = True
        _running = True
        signal.setitimer(signal.ITIMER_REAL, budget_s)
        try:
            return function(event, context)
        finally:
            _running = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        if collecting:
            gc.enable()
