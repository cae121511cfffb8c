"""Running a long-lived role on uvloop, with a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from typing import Callable, Protocol

import uvloop


class Role(Protocol):
    """A long-running consumer role (the mediator, a processor, the indexer)."""

    async def run(self) -> None:
        """Consume until :meth:`stop` is called; flush and commit what is done before returning."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish its current batch and return."""


def run_role(build: Callable[[], Role]) -> None:
    """Build the role inside the event loop (Kafka clients need a running loop) and run it."""

    async def runner() -> None:
        role = build()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, role.stop)
        await role.run()

    uvloop.run(runner())
