"""``headwater up``: the whole pipeline on this machine until Ctrl-C."""

from __future__ import annotations

import base64
import signal
import threading

from headwater.devstack.stack import Stack, StackError
from headwater.settings import Settings


def curl_example(stack: Stack) -> str:
    key = base64.b64encode(f"{stack.settings.default_write_key}:".encode()).decode()
    body = '{"event":"Signed Up","anonymousId":"visitor-1","properties":{"plan":"pro"}}'
    return (
        f"curl -s {stack.collector_url}/v1/track -H 'Authorization: Basic {key}' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )


def run_up(settings: Settings) -> None:
    stack = Stack(settings)
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    print("starting Kafka and ClickHouse ...", flush=True)
    try:
        stack.start()
    except StackError as exc:
        print(f"start-up failed: {exc}", flush=True)
        stack.stop()
        raise SystemExit(1) from exc
    print(f"\nHeadwater is up. Collector: {stack.collector_url}")
    print(f"Admin API: {stack.admin_url} (Authorization: Bearer {stack.settings.admin_token})")
    print(f"Dashboard: {stack.dashboard_url} (log in with the admin token)")
    print(f"Logs: {settings.local_path / 'logs'}   ClickHouse: 127.0.0.1:{settings.clickhouse_port} (native)")
    print(f"Try it:\n  {curl_example(stack)}")
    print(f"On a web page:\n  <script defer src=\"{stack.collector_url}/hw.js\" "
          f"data-key=\"{stack.settings.default_write_key}\"></script>\n\nCtrl-C stops everything.", flush=True)
    while not stopped.wait(1):
        dead = [c.name for c in stack.children if not c.alive()]
        if dead:
            print(f"{', '.join(dead)} exited; see their logs. Stopping.", flush=True)
            break
    print("stopping ...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
