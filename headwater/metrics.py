"""Prometheus metrics for the consuming roles, served on ``metrics_port`` (0: not served).

:class:`ConsumerLag` exports how far a consumer group is behind, per partition, from the broker's end
offsets and the group's committed offsets. It asks the broker every few seconds, so the figure keeps
growing while the role is paused (for example, while ClickHouse is down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge, start_http_server

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
    lag = ConsumerLag(registry, consumers)
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    log.info("metrics", host=settings.metrics_host, port=settings.metrics_port)
    task = asyncio.create_task(lag.run(stopping))

    def stop_lag() -> None:
        task.cancel()

    return stop_lag


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
