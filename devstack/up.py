"""``headwater up``: the whole pipeline on this machine until Ctrl-C."""

from __future__ import annotations

import base64
import os
import signal
import sys
import threading

from devstack.stack import Stack, StackError
from headwater.settings import Settings


def curl_example(stack: Stack) -> str:
    key = base64.b64encode(f"{stack.settings.default_write_key}:".encode()).decode()
    body = '{"event":"Signed Up","anonymousId":"visitor-1","properties":{"plan":"pro"}}'
    return (
        f"curl -s {stack.collector_url}/v1/track -H 'Authorization: Basic {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


class Console:
    """Prints progress to stdout until stdout breaks, then to nowhere. With ``make up | tee log`` a
    Ctrl-C kills ``tee`` too, and the next print would raise ``BrokenPipeError`` before the stack is
    stopped, leaving every child running: a broken stdout must never skip the shutdown."""

    def __init__(self) -> None:
        self.broken = False

    def say(self, text: str) -> None:
        if self.broken:
            return
        try:
            print(text, flush=True)
        except (BrokenPipeError, OSError):
            self.broken = True
            sys.stdout = open(os.devnull, "w")  # so that the interpreter's final flush cannot raise either


def run_up(settings: Settings) -> None:
    """Start the stack, print where everything is, and stop it all on Ctrl-C, SIGTERM or SIGHUP, or when a
    child exits; the stop runs whatever else fails."""
    stack, console = Stack(settings), Console()
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        console.say("starting Kafka and ClickHouse ...")
        try:
            stack.start()
        except StackError as exc:
            console.say(f"start-up failed: {exc}")
            raise SystemExit(1) from exc
        console.say(welcome(stack))
        while not stopped.wait(1):
            dead = [c.name for c in stack.children if not c.alive()]
            if dead:
                console.say(f"{', '.join(dead)} exited; see their logs. Stopping.")
                break
        console.say("stopping ...")
    finally:
        stack.stop()
        console.say("stopped.")


def welcome(stack: Stack) -> str:
    settings = stack.settings
    return "\n".join([
        f"\nHeadwater is up. Collector: {stack.collector_url}",
        f"Admin API: {stack.admin_url} (Authorization: Bearer {settings.admin_token})",
        f"Dashboard: {stack.dashboard_url} (log in with the admin token)",
        f"Logs: {settings.local_path / 'logs'}   ClickHouse: 127.0.0.1:{settings.clickhouse_port} (native protocol; "
        "SQL: headwater sql \"SELECT ...\")",
        f"Try it:\n  {curl_example(stack)}",
        f"On a web page:\n  <script defer src=\"{stack.collector_url}/hw.js\" "
        f"data-key=\"{settings.default_write_key}\"></script>\n\nCtrl-C stops everything.",
    ])
