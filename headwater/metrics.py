"""Prometheus metrics for the consuming roles, served on ``metrics_port`` (0: not served), with
``/livez`` beside them for a liveness probe.

The HTTP server runs in a thread, so it keeps answering while the role's event loop is stuck. ``/livez``
therefore answers from a heartbeat the event loop beats every second: 503 once the last beat is older
than ``liveness_stall_s``.

:class:`ConsumerLag` exports how far a consumer group is behind, per partition, from the broker's end
offsets and the group's committed offsets. It asks the broker every few seconds, so the figure keeps
growing while the role is paused (for example, while ClickHouse is down).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge, make_wsgi_app

from headwater.settings import Settings

log = structlog.get_logger()
LAG_INTERVAL_S = 5.0


def serve_with_lag(registry: CollectorRegistry, settings: Settings, consumers: list[tuple[AIOKafkaConsumer, str]],
                   stopping: asyncio.Event) -> Callable[[], None]:
    """Serve ``registry`` (with the lag of each ``(consumer, group id)`` added) on
    ``metrics_host:metrics_port``, keeping the lag current until ``stopping`` is set or the returned
    function is called (call it before the consumers stop). Nothing is served when the port is 0."""
    if not settings.metrics_port:
        return lambda: None
    lag, heartbeat = ConsumerLag(registry, consumers), Heartbeat()
    serve_in_thread(settings, metrics_and_liveness(registry, heartbeat, settings.liveness_stall_s))
    log.info("metrics", host=settings.metrics_host, port=settings.metrics_port)
    tasks = [asyncio.create_task(lag.run(stopping)), asyncio.create_task(heartbeat.run(stopping))]

    def stop_lag() -> None:
        for task in tasks:
            task.cancel()

    return stop_lag


class Heartbeat:
    """The time of the event loop's last turn, beaten every second by :meth:`run`."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.last

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.last = time.monotonic()
            await asyncio.sleep(1.0)


def metrics_and_liveness(registry: CollectorRegistry, heartbeat: Heartbeat, stall_s: float) -> Callable:
    """A WSGI app: ``/livez`` from the heartbeat, anything else the registry's metrics."""
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/livez":
            return metrics_app(environ, start_response)
        age = heartbeat.age()
        alive = age < stall_s
        start_response("200 OK" if alive else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [f"event loop {'alive' if alive else 'stalled'}: last turn {age:.1f} s ago\n".encode()]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # probes and scrapes every few seconds: not logged
        pass


def serve_in_thread(settings: Settings, app: Callable) -> None:
    server = make_server(settings.metrics_host, settings.metrics_port, app, server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


class ConsumerLag:
    """``headwater_consumer_lag{group,topic,partition}``: end offset minus committed offset."""

    def __init__(self, registry: CollectorRegistry, consumers: list[tuple[AIOKafkaConsumer, str]]) -> None:
        self.consumers = consumers
        self.gauge = Gauge("headwater_consumer_lag", "records the consumer group has not committed yet",
                           ["group", "topic", "partition"], registry=registry)
        self.total = Gauge("headwater_consumer_lag_total", "sum of the group's lag over its assigned partitions",
                           ["group"], registry=registry)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.update()
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("lag_unavailable", error=str(exc))
            try:
                await asyncio.wait_for(stopping.wait(), LAG_INTERVAL_S)
            except TimeoutError:
                pass

    async def update(self) -> None:
        for consumer, group_id in self.consumers:
            await self._update(consumer, group_id)

    async def _update(self, consumer: AIOKafkaConsumer, group_id: str) -> None:
        partitions = list(consumer.assignment())
        if not partitions:
            self.total.labels(group_id).set(0)
            return
        ends = await consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            committed = await consumer.committed(tp)
            lag = max(ends[tp] - (committed or 0), 0)
            self.gauge.labels(group_id, tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.total.labels(group_id).set(total)
