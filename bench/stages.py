"""Where an event's ingest-to-queryable time goes, hop by hop.

Every Kafka record carries the time its producer appended it. For one run's events (message ids
``<run>-<n>``) this reads, from each topic of the flow, the first record that held each event, and
with the event's ``received_at`` and ``inserted_at`` in ClickHouse splits its way into hops:

- ``collector``: received -> appended to the raw topic;
- ``mediator``: raw record -> the first step's topic; then one hop per processor process, named by the
  topic it reads (``step.validate -> step.sessionize`` when validate, enrich and anonymize share a
  process);
- ``indexer``: the index topic's record -> the row's ``inserted_at`` (this includes the sessionizer's
  transaction commit: its records become readable only then).

``python -m bench.stages RATE...`` starts a fresh stack of its own (under ``.local/stages``), sends at
each rate for ``BENCH_STEADY_S`` seconds and prints each hop's p50, p99 and maximum, and the CPU
each process spent meanwhile (µs an event, and how many cores were busy).
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer, TopicPartition

from headwater.clickhouse import make_client, project_database
from headwater.envelope import decode_batch
from headwater.flow import STEP_ORDER
from headwater.kafka import kafka_connection
from headwater.settings import Settings, get_settings
from headwater.topics import raw_topic, step_topic


def flow_topics(settings: Settings) -> list[str]:
    return [raw_topic(settings), *(step_topic(settings, step) for step in STEP_ORDER)]


async def first_seen(settings: Settings, topics: list[str], run: str, since_ms: int) -> dict[str, dict[str, int]]:
    """Per topic: message id -> the append time (ms) of the first record holding that event of ``run``."""
    consumer = AIOKafkaConsumer(**kafka_connection(settings), enable_auto_commit=False,
                                isolation_level="read_committed", max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    seen: dict[str, dict[str, int]] = {topic: {} for topic in topics}
    prefix = run + "-"
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if starts[tp] is not None and starts[tp].offset < ends[tp]}
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        while todo:
            for tp, records in (await consumer.getmany(*todo, timeout_ms=1000)).items():
                for record in records:
                    for envelope in decode_batch(record.value):
                        if envelope.message_id.startswith(prefix):
                            seen[tp.topic].setdefault(envelope.message_id, record.timestamp)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return seen


def stored_times(settings: Settings, run: str) -> dict[str, tuple[int, int]]:
    """Message id -> (received_at, inserted_at) in ms, from the default project's events table."""
    client = make_client(settings)
    try:
        rows = client.execute(
            "SELECT message_id, toUnixTimestamp64Milli(received_at), toUnixTimestamp64Milli(inserted_at) "
            f"FROM {project_database(settings.default_project)}.events WHERE startsWith(message_id, %(p)s)",
            {"p": run + "-"})
    finally:
        client.disconnect()
    return {message_id: (received, inserted) for message_id, received, inserted in rows}


def quantiles(values: list[int]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1]} if ordered else {}


def hop_latencies(settings: Settings, run: str, since_ms: int) -> dict:
    """Each hop's p50, p99 and maximum (ms) for the events of ``run`` sent after ``since_ms``."""
    stored = stored_times(settings, run)
    seen = asyncio.run(first_seen(settings, flow_topics(settings), run, since_ms))
    path = [topic for topic in flow_topics(settings) if seen[topic]]  # the topics this layout uses
    names = ["collector", *(f"{a.rsplit('.', 1)[-1]} -> {b.rsplit('.', 1)[-1]}" for a, b in zip(path, path[1:])),
             "indexer"]
    hops: dict[str, list[int]] = {}
    for message_id, (received, inserted) in stored.items():
        times = [received, *(seen[topic].get(message_id) for topic in path), inserted]
        if None in times:
            continue
        for name, start, end in zip(names, times, times[1:]):
            hops.setdefault(name, []).append(end - start)
    totals = [inserted - received for received, inserted in stored.values()]
    return {"events": len(stored), "hops_ms": {name: quantiles(v) for name, v in hops.items()},
            "total_ms": quantiles(totals)}


def main(rates: list[float]) -> None:
    from bench.run import Events, fresh_stack_settings, steady_high, warm_up
    from devstack.stack import Stack

    settings = fresh_stack_settings(get_settings(), ".local/stages")
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    with Stack(settings):
        counter = Events(settings)
        warm_up(settings, url, counter)
        for rate in rates:
            print(json.dumps(steady_high(settings, url, counter, rate)[2]), flush=True)


if __name__ == "__main__":
    main([float(rate) for rate in sys.argv[1:]] or [10_000.0, 15_000.0])
