"""The events indexer's insert throughput, one process on its own (part of `make bench`).

It starts a Kafka and a ClickHouse of its own (``.local/bench-indexer``, ports apart from `make up`'s),
fills the index topic with ``BENCH_INDEXER_EVENTS`` (default 1,000,000) enriched envelopes in records
of 100, as the processors write them (about 1 KB each: a page event with its context, user agent,
GeoIP, URL, referrer, campaign and session), then starts one `headwater indexer events` and times it
until its consumer group has committed everything. Rows per second are wall clock from its first
batch to its last (everything on the same 2 cores, ClickHouse's decoding included); rows per
core-second count the indexer process's own CPU. Figures go to bench/results/indexer.json.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import uuid
from datetime import UTC, datetime

from bench.run import RESULTS, GroupProgress, drain_role
from devstack.stack import Stack
from headwater.clickhouse import make_client, project_database
from headwater.envelope import Envelope, encode_batch
from headwater.flow import INDEX_STEP
from headwater.kafka import make_producer
from headwater.partitioning import partition_of
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
from headwater.settings import get_settings
from headwater.topics import step_topic

PER_RECORD = 100
BENCH_SETTINGS = {"local_dir": ".local/bench-indexer", "kafka_bootstrap": "127.0.0.1:29092",
                  "kafka_controller_port": 29093, "clickhouse_port": 29000, "clickhouse_http_port": 28123,
                  "local_metrics_port": 29400}


def envelope(project: str, n: int) -> Envelope:
    visitor = f"visitor-{n % 20_000}"
    return Envelope(
        project, str(uuid.uuid4()), 1_790_000_000_000 + n, f"req-{n // PER_RECORD}",
        {"type": "page", "name": "Pricing", "anonymousId": visitor, "messageId": f"m{n}",
         "timestamp": "2026-10-01T09:10:22.123Z", "sentAt": "2026-10-01T09:10:22.200Z",
         "properties": {"path": f"/page/{n % 50}", "title": "Pricing", "plan": "pro"},
         "context": {"library": {"name": "analytics.js", "version": "5.2.0"}, "locale": "en-GB",
                     "page": {"url": f"https://shop.example/page/{n % 50}?utm_source=news",
                              "referrer": "https://www.google.com/", "title": "Pricing"},
                     "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"}},
        ip="203.0.113.0",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
        enriched={"ua": {"browser": "Chrome", "browser_version": "131", "os": "Linux", "os_version": "",
                         "device": "Other", "is_bot": False},
                  "geo": {"country": "GB", "region": "ENG", "city": "London", "latitude": 51.5, "longitude": -0.12},
                  "page": {"url": f"https://shop.example/page/{n % 50}", "host": "shop.example",
                           "path": f"/page/{n % 50}", "query": "utm_source=news"},
                  "referrer": {"url": "https://www.google.com/", "host": "www.google.com", "medium": "search",
                               "source": "Google"},
                  "campaign": {"source": "news"}, "session": {"id": f"{visitor}-1", "seq": n % 30 + 1}})


async def fill(settings, project: str, events: int) -> None:
    topic = step_topic(settings, INDEX_STEP)
    producer = make_producer(settings)
    await producer.start()
    try:
        partitions = len(await producer.partitions_for(topic))
        for start in range(0, events, PER_RECORD):
            batch = [envelope(project, n) for n in range(start, min(start + PER_RECORD, events))]
            key = batch[0].key()
            await producer.send(topic, encode_batch(batch), key=key, partition=partition_of(key, partitions),
                                headers=[(PROJECT_HEADER, project.encode()),
                                         (EVENTS_HEADER, str(len(batch)).encode())])
        await producer.flush()
    finally:
        await producer.stop()


def main() -> None:
    events = int(os.environ.get("BENCH_INDEXER_EVENTS", 1_000_000))
    settings = dataclasses.replace(get_settings(), **BENCH_SETTINGS)
    shutil.rmtree(settings.local_path, ignore_errors=True)  # a fresh topic and table every run
    stack = Stack(settings)
    project = settings.default_project
    stack.start_servers()
    try:
        asyncio.run(fill(settings, project, events))
        print(f"{events} events in the index topic", flush=True)

        async def drain() -> dict:
            async with GroupProgress(settings) as progress:
                return await drain_role(stack, progress, ("indexer", "headwater-indexer-events",
                                                          step_topic(settings, INDEX_STEP)), events)

        figures = asyncio.run(drain())
        client = make_client(settings)
        stored = client.execute(f"SELECT count() FROM {project_database(project)}.events")[0][0]
        client.disconnect()
    finally:
        stack.stop()
    result = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
              "events": events, "rows_stored": stored,
              "rows_per_s": figures.get("events_per_s"), "rows_per_indexer_core_s": figures.get("events_per_core_s"),
              "batches": figures.get("batches"), "seconds": figures.get("seconds")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "indexer.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
