"""The life cycle every consuming role shares: the relay (mediator and stateless processors), the
sessionizer and the indexer.

:func:`run_consumer` starts the role's producer and resources, checks the configuration, loads the
topics' partition counts, starts the consumer, serves the role's metrics with its consumer lag, and
then calls :meth:`ConsumerRole.poll` until the role is stopped. On the way out (stopped, or a poll
raised) it lets the role finish what is in flight (:meth:`ConsumerRole.drain`), then stops the lag
updates, the consumer, the resources in reverse order and the producer. What a poll commits, and
when, is each role's own, stated on the role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from headwater import metrics
from headwater.partitioning import PartitionMap
from headwater.settings import Settings
from headwater.topics import topic_specs


class Resource(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class ConsumerRole(Protocol):
    """A role :func:`run_consumer` runs. ``producer`` may be replaced while it runs (the one in place
    at the end is stopped)."""

    settings: Settings
    group_id: str
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    stopping: asyncio.Event
    started: asyncio.Event  # set once the consumer has started

    async def poll(self) -> None:
        """Read one poll and handle it."""

    async def drain(self) -> None:
        """Finish the work in flight (a transaction, an INSERT) before the clients stop."""


async def run_consumer(role: ConsumerRole, registry: CollectorRegistry | None, resources: tuple[Resource, ...] = (),
                       check: Callable[[], None] | None = None, partitions: PartitionMap | None = None,
                       subscribe: Callable[[], None] | None = None) -> None:
    """Run ``role`` until its ``stopping`` is set. ``registry`` is served on ``metrics_port`` with
    the consumer's lag (``None``: whoever runs the role serves it). ``check`` raises, naming every
    problem, before anything is read; ``subscribe`` subscribes the consumer (with its rebalance
    listener) when it was not made with its topics."""
    settings = role.settings
    await role.producer.start()
    for resource in resources:
        await resource.start()
    if check:
        check()
    if partitions is not None:
        await partitions.load(role.producer, [spec.name for spec in topic_specs(settings)])
    if subscribe:
        subscribe()
    await role.consumer.start()
    role.started.set()
    stop_lag = (metrics.serve_with_lag(registry, settings, [(role.consumer, role.group_id)], role.stopping)
                if registry is not None else (lambda: None))
    try:
        while not role.stopping.is_set():
            await role.poll()
    finally:
        await role.drain()
        stop_lag()
        await role.consumer.stop()
        for resource in reversed(resources):
            await resource.stop()
        await role.producer.stop()


class SideBySide(Protocol):
    """A role that :func:`run_side_by_side` runs with others in one process."""

    consumer: AIOKafkaConsumer
    group_id: str
    started: asyncio.Event

    async def run(self) -> None: ...
    def stop(self) -> None: ...


async def run_side_by_side(roles: list, registry: CollectorRegistry, settings: Settings,
                           stopping: asyncio.Event) -> None:
    """Run ``roles`` (:class:`SideBySide`, each made not to serve its own metrics) in one process,
    until they stop. ``registry`` is served once, with every consumer's lag, when all have started. A
    role that fails stops the others, and what it raised is raised here."""
    tasks = [asyncio.create_task(role.run()) for role in roles]
    started = [asyncio.create_task(role.started.wait()) for role in roles]
    await asyncio.wait([asyncio.gather(*started), *tasks], return_when=asyncio.FIRST_COMPLETED)
    for waiter in started:
        waiter.cancel()
    stop_lag = metrics.serve_with_lag(registry, settings, [(role.consumer, role.group_id) for role in roles],
                                      stopping)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        stop_lag()
        stopping.set()
        for role in roles:
            role.stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
