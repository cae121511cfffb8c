"""The lag of every Headwater consumer group, measured from outside the consumers.

A consumer's own ``headwater_consumer_lag_total`` stops being exported when the consumer dies, exactly
when it matters. This role asks the broker instead: for every group named ``headwater-…``, the end
offset of each partition it has committed on, minus that commit, and the sum of its commits. So the
lag keeps growing, and the commits stand still, while a step is down or stuck. It reads only group
and topic metadata (the ``control`` Kafka user) and writes nothing.

Metrics (served with ``/livez`` on ``metrics_port``): ``headwater_group_lag{group,topic,partition}``,
``headwater_group_lag_total{group}``, ``headwater_group_committed_offsets{group}`` (the sum of its
committed offsets: it stops moving when the group stops) and
``headwater_group_lag_checked_timestamp_seconds`` (the last complete pass).
"""

from __future__ import annotations

import asyncio
import time

import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Gauge

from headwater import metrics
from headwater.kafka import kafka_connection
from headwater.settings import Settings

log = structlog.get_logger()
INTERVAL_S = 15.0
GROUP_PREFIX = "headwater-"  # every role's consumer group (processors/base.py, mediator, indexer)


class GroupLag:
    """The gauges, and one pass over the groups."""

    def __init__(self, registry: CollectorRegistry, group_prefix: str = GROUP_PREFIX) -> None:
        self.group_prefix = group_prefix
        self.lag = Gauge("headwater_group_lag", "records a group has not committed, per partition",
                         ["group", "topic", "partition"], registry=registry)
        self.total = Gauge("headwater_group_lag_total", "records a group has not committed", ["group"],
                           registry=registry)
        self.committed = Gauge("headwater_group_committed_offsets", "the sum of a group's committed offsets",
                               ["group"], registry=registry)
        self.checked = Gauge("headwater_group_lag_checked_timestamp_seconds", "when the last pass completed",
                             registry=registry)

    async def update(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> dict[str, int]:
        """Measure every group; return each one's total lag."""
        groups = sorted(group for group, *_ in await admin.list_consumer_groups()
                        if group.startswith(self.group_prefix))
        totals = {}
        for group in groups:
            totals[group] = await self._measure(admin, reader, group)
        self.checked.set(time.time())
        return totals

    async def _measure(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, group: str) -> int:
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                     if meta.offset >= 0}
        ends = await reader.end_offsets(list(committed)) if committed else {}
        total = 0
        for tp, offset in committed.items():
            lag = max(ends[tp] - offset, 0)
            self.lag.labels(group, tp.topic, str(tp.partition)).set(lag)
            total += lag
        self.total.labels(group).set(total)
        self.committed.labels(group).set(sum(committed.values()))
        return total


class LagExporter:
    """``headwater lag-exporter``: a pass every ``INTERVAL_S`` until stopped."""

    def __init__(self, settings: Settings, interval_s: float = INTERVAL_S) -> None:
        self.settings, self.interval_s = settings, interval_s
        self.registry = CollectorRegistry()
        self.groups = GroupLag(self.registry)
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        admin = AIOKafkaAdminClient(**kafka_connection(self.settings))
        reader = AIOKafkaConsumer(**kafka_connection(self.settings), enable_auto_commit=False)
        await admin.start()
        await reader.start()
        stop_serving = metrics.serve_with_lag(self.registry, self.settings, [], self.stopping)
        try:
            while not self.stopping.is_set():
                await self._pass(admin, reader)
                try:
                    await asyncio.wait_for(self.stopping.wait(), self.interval_s)
                except TimeoutError:
                    pass
        finally:
            stop_serving()
            await reader.stop()
            await admin.close()

    async def _pass(self, admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer) -> None:
        try:
            totals = await self.groups.update(admin, reader)
        except (TimeoutError, KafkaError, OSError) as exc:  # the broker is away: the next pass retries
            log.warning("group_lag_unavailable", error=str(exc))
            return
        log.debug("group_lag", **totals)


async def group_lags(settings: Settings, timeout_s: float = 5.0) -> dict[str, int] | None:
    """One pass, from a client of its own: each Headwater group's total lag, or ``None`` when the broker
    does not answer within ``timeout_s`` (for a page that shows the lag beside other figures)."""
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    reader = AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False)
    try:
        await asyncio.wait_for(asyncio.gather(admin.start(), reader.start()), timeout_s)
        return await asyncio.wait_for(GroupLag(CollectorRegistry()).update(admin, reader), timeout_s)
    except (TimeoutError, KafkaError, OSError) as exc:
        log.warning("group_lag_unavailable", error=str(exc) or type(exc).__name__)
        return None
    finally:
        await reader.stop()
        await admin.close()
