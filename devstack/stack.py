"""Starts and stops the whole local stack: Kafka, ClickHouse and every Headwater role, each as its
own process with its output in ``<local_dir>/logs/<name>.log``.

Children run in their own process groups, so a Ctrl-C reaches only this supervisor, which then stops
them in order: the services first (so they flush and commit), then ClickHouse, then Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from commands.roles import COLOCATED, service_roles
from devstack import clickhouse as local_clickhouse
from devstack import kafka as local_kafka
from headwater.clickhouse import make_client
from headwater.kafka import ensure_topics, wait_for_broker
from headwater.migrations import migrate_project
from headwater.projects.admin import ProjectAdmin
from headwater.projects.model import ANY_ORIGIN
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings, settings_env

DEV_ADMIN_TOKEN = "dev-admin-token"


async def bootstrap_projects(settings: Settings) -> None:
    store, writer = ProjectStore(settings), ProjectWriter(settings)
    await writer.start()
    await store.start()
    try:
        admin = ProjectAdmin(settings, store, writer)
        if store.get(settings.default_project) is None:
            await admin.create(settings.default_project, "Default project", [ANY_ORIGIN],
                               public_key=settings.default_write_key)
        client = make_client(settings)
        for project_id in store.projects:
            migrate_project(client, project_id)
        client.disconnect()
    finally:
        await store.stop()
        await writer.stop()


class StackError(RuntimeError):
    """A part of the stack failed to start; the message names it and quotes its log."""


@dataclasses.dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # on top of the stack's environment
    proc: subprocess.Popen | None = None
    log_start: int = 0  # where this run's lines begin in log_path, which every run appends to

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.log_start = log.tell()
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env={**env, **self.env}, start_new_session=True
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; return the exit code (negative: killed)."""
        if self.proc is None:
            return None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_of_this_run(self) -> str:
        """Everything the running process has logged so far, without the lines of earlier runs."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


HTTP_ROLES = ("collector", "admin", "dashboard")  # answer on ports of their own; the others serve metrics


def role_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "headwater", *args]




class Stack:
    def __init__(self, settings: Settings) -> None:
        if not settings.admin_token:
            settings = dataclasses.replace(settings, admin_token=DEV_ADMIN_TOKEN)
        self.settings = settings
        self.env = {**os.environ, **settings_env(settings)}
        self.kafka = self._service("kafka", ["dev", "kafka"])
        self.clickhouse = self._service("clickhouse", ["dev", "clickhouse"])
        self.services = [self._service(name, argv) for name, argv in service_roles(settings.colocate_stateless_steps)]
        for port, child in enumerate(self.consuming_roles, start=settings.local_metrics_port):
            child.env["HEADWATER_METRICS_PORT"] = str(port)

    def _service(self, name: str, argv: list[str]) -> Child:
        return Child(name, role_argv(*argv), self.settings.local_path / "logs" / f"{name}.log")

    def role_of(self, step: str) -> str:
        """The name of the child that runs processor ``step`` in the current layout."""
        own = f"processor-{step}"
        return own if any(child.name == own for child in self.services) else COLOCATED

    def switch_layout(self, colocate_stateless_steps: bool, start: bool = True) -> None:
        """Swap the one-process-per-step stateless processors for one process running them all, or
        back (started unless ``start`` is false). Each topic keeps its consumer group, so nothing is
        read twice or skipped."""
        roles = service_roles(colocate_stateless_steps)
        names = {name for name, _ in roles}
        for child in self.services:
            if child.name not in names:
                child.stop()
        kept = {child.name: child for child in self.services if child.name in names}
        self.services = [kept.get(name) or self._service(name, argv) for name, argv in roles]
        used = [int(c.env["HEADWATER_METRICS_PORT"]) for c in kept.values() if "HEADWATER_METRICS_PORT" in c.env]
        for port, child in enumerate([c for c in self.consuming_roles if c.name not in kept], start=max(used) + 1):
            child.env["HEADWATER_METRICS_PORT"] = str(port)
        if start:
            self.start_services()

    @property
    def consuming_roles(self) -> list[Child]:
        """The roles that serve Prometheus metrics (their consumer lag and more) on a port of their own;
        the collector serves its metrics at /metrics."""
        return [c for c in self.services if c.name not in HTTP_ROLES]

    def metrics_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.child(name).env['HEADWATER_METRICS_PORT']}/metrics"

    @property
    def children(self) -> list[Child]:
        return [self.kafka, self.clickhouse, *self.services]

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start_servers(self) -> None:
        local_kafka.ensure_jars(self.settings)
        self.kafka.start(self.env)
        self.clickhouse.start(self.env)
        self._wait(self.clickhouse, self.clickhouse_ready, 60)
        self._wait(self.kafka, self.kafka_ready, 120)
        self.bootstrap()

    def restart(self, name: str) -> int | None:
        """Stop one child cleanly, start it again and wait until it answers; return its exit code."""
        child = self.child(name)
        code = child.stop()
        child.start(self.env)
        ready = {"kafka": self.kafka_ready, "clickhouse": self.clickhouse_ready, **self._http_ready()}
        if name in ready:
            self._wait(child, ready[name], 120)
        self.write_pids()
        return code

    @contextlib.contextmanager
    def restarted_with(self, name: str, **env: str) -> Iterator[Child]:
        """Run one child with extra environment (a fault injection) for the block, and with its usual one
        after it, even when the block fails: a held process must not outlive the test that asked for it."""
        child = self.child(name)
        child.env.update(env)
        try:
            self.restart(name)
            yield child
        finally:
            for variable in env:
                child.env.pop(variable, None)
            self.restart(name)

    def bootstrap(self) -> None:
        """Create the topics, apply every project's migrations, and create the default project
        (public key ``default_write_key``, any origin) when it does not exist yet."""
        asyncio.run(ensure_topics(self.settings))
        asyncio.run(bootstrap_projects(self.settings))

    def start_services(self, names: list[str] | None = None) -> None:
        """Start the named roles (default: every one not running yet); wait for the collector and the
        admin API to answer."""
        for child in self.services:
            if (names is None or child.name in names) and not child.alive():
                child.start(self.env)
        for name, ready in self._http_ready().items():
            if self.child(name).alive():
                self._wait(self.child(name), ready, 60)
        self.write_pids()

    def _http_ready(self) -> dict:
        """For each HTTP role, a check that it answers."""
        return {"collector": lambda: http_ok(self.collector_url + "/readyz"),
                "admin": lambda: http_ok(self.admin_url + "/healthz"),
                "dashboard": lambda: http_ok(self.dashboard_url + "/healthz")}

    def start(self) -> None:
        self.start_servers()
        self.start_services()

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.pid_file.unlink(missing_ok=True)

    @property
    def collector_url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.settings.collector_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.settings.admin_host}:{self.settings.admin_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.settings.dashboard_host}:{self.settings.dashboard_port}"

    @property
    def pid_file(self) -> Path:
        return self.settings.local_path / "stack.json"

    def write_pids(self) -> None:
        pids = {c.name: c.proc.pid for c in self.children if c.alive()}
        self.pid_file.write_text(json.dumps(pids))

    def clickhouse_ready(self) -> bool:
        return local_clickhouse.is_up(self.settings)

    def kafka_ready(self) -> bool:
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refusals are expected while it boots
        try:
            asyncio.run(wait_for_broker(self.settings, timeout_s=2))
            return True
        except TimeoutError:
            return False

    def _wait(self, child: Child, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if not child.alive():
                raise StackError(f"{child.name} exited during start-up:\n{child.log_tail()}")
            if time.monotonic() > deadline:
                raise StackError(f"{child.name} not ready after {timeout_s:.0f}s:\n{child.log_tail()}")
            time.sleep(0.2)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False
