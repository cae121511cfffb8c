"""Running a long-lived role on uvloop, with a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Callable
from typing import Protocol

import structlog
import uvloop

from headwater.errors import FatalError

GC_THRESHOLDS = (50_000, 20, 10)


class Role(Protocol):
    """A long-running consumer role (the mediator, a processor, the indexer)."""

    async def run(self) -> None:
        """Consume until :meth:`stop` is called; flush and commit what is done before returning."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch and return."""


def tune_gc() -> None:
    """Call once start-up is done. What it built (modules, compiled schemas, parsers' tables) lives as
    long as the process: keep it out of every full collection. And collect young objects every 50,000
    allocations instead of 700: a poll or a request of a hundred events allocates thousands of objects
    that die with it, so the default ran the collector several times per batch."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run_role(build: Callable[[], Role]) -> None:
    """Build the role inside the event loop (Kafka clients need a running loop) and run it."""

    async def runner() -> None:
        role = build()
        tune_gc()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, role.stop)
        await role.run()

    try:
        uvloop.run(runner())
    except FatalError as exc:
        structlog.get_logger().critical("stopped", error=str(exc))
        print(f"headwater: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
