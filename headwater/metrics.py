"""Prometheus metrics for the consuming roles, served on ``metrics_port`` (0: not served).

:class:`ConsumerLag` exports how far a consumer group is behind, per partition, from the broker's end
offsets and the group's committed offsets. It asks the broker every few seconds, so the figure keeps
growing while the role is paused (for example, while ClickHouse is down).
"""

from __future__ import annotations

import asyncio
from typing import Callable

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from headwater.settings import Settings

log = structlog.get_logger()
LAG_INTERVAL_S = 5.0


def serve_with_lag(registry: CollectorRegistry, settings: Settings, consumer: AIOKafkaConsumer, group_id: str,
                   stopping: asyncio.Event) -> Callable[[], None]:
    """Serve ``registry`` (with the group's lag added) on ``metrics_host:metrics_port``, keeping the lag
    current until ``stopping`` is set or the returned function is called (call it before the consumer
    stops). Nothing is served when the port is 0."""
    if not settings.metrics_port:
        return lambda: None
    lag = ConsumerLag(registry, consumer, group_id)
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    log.info("metrics", host=settings.metrics_host, port=settings.metrics_port)
    return asyncio.create_task(lag.run(stopping)).cancel


class ConsumerLag:
    """``headwater_consumer_lag{group,topic,partition}``: end offset minus committed offset."""

    def __init__(self, registry: CollectorRegistry, consumer: AIOKafkaConsumer, group_id: str) -> None:
        self.consumer = consumer
        self.group_id = group_id
        self.gauge = Gauge("headwater_consumer_lag", "records the consumer group has not committed yet",
                           ["group", "topic", "partition"], registry=registry)
        self.total = Gauge("headwater_consumer_lag_total", "sum of the group's lag over its assigned partitions",
                           ["group"], registry=registry)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.update()
            except (KafkaError, asyncio.TimeoutError, OSError) as exc:
                log.warning("lag_unavailable", error=str(exc))
            try:
                await asyncio.wait_for(stopping.wait(), LAG_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    async def update(self) -> None:
        partitions = list(self.consumer.assignment())
        if not partitions:
            self.total.labels(self.group_id).set(0)
            return
        ends = await self.consumer.end_offsets(partitions)
        total = 0
        for tp in partitions:
            committed = await self.consumer.committed(tp)
            lag = max(ends[tp] - (committed or 0), 0)
            self.gauge.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.total.labels(self.group_id).set(total)
