"""The forwarder's cost: ``python -m bench.forwarder`` (part of ``make bench``), into
bench/results/forwarder.json.

1. **Forwarding per core.** The index topic is filled with ``BENCH_FORWARD_EVENTS`` realistic events
   (bench/events.py, about 700 bytes, in records of 100 as the pipeline writes them); then a forwarder
   process runs one destination alone until it has delivered them all: a webhook (batches of 100, to a
   receiver in a process of its own, bench/receiver.py) and the lake (Parquet files of up to 10,000
   events, in a local directory and on VersityGW, an S3-compatible server on loopback). Reported: events/s, and events per CPU-second of the forwarder process.
   Beside them, from the same run, the engine-only floor: the CPU per event of reading and decoding the
   same records with a bare consumer (what any forwarder in Python pays before it sends anything).
2. **Added CPU end to end.** The whole stack runs the batched end-to-end load of bench.run twice:
   without destinations, then with one of each type on (webhook and Segment-compatible to the receiver,
   a Kafka topic on the same broker, a local lake). Reported: CPU µs per event over all the stack's
   processes each time, the difference, and the forwarder's own share. The receiver's CPU is not
   counted (it stands for the team's tools); the Kafka destination's writes are (same broker).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from bench.events import event
from bench.run import CpuShares, Events, cpu_seconds, end_to_end, fresh_stack_settings, warm_up
from devstack.s3 import S3Server
from devstack.stack import Stack, role_argv
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.flow import INDEX_STEP
from headwater.kafka import make_consumer
from headwater.projects.admin import ProjectAdmin
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
from headwater.settings import Settings, get_settings
from headwater.topics import step_topic

BENCH_DIR = ".local/bench-forwarder"
RESULTS = Path(__file__).resolve().parent / "results"
RECEIVER_PORT = 19981
METRICS_PORT = 19982
S3_PORT = 19983


def envelope(settings: Settings, run: str, n: int) -> Envelope:
    now = int(time.time() * 1000)
    return Envelope(settings.default_project, f"{run}-{n}", now, run, event(run, n))


async def fill_index(settings: Settings, run: str, events: int) -> None:
    """``events`` envelopes on the index topic, 100 a record, keyed as the pipeline keys them."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, acks="all",
                                max_batch_size=1024 * 1024, max_request_size=4 * 1024 * 1024,
                                compression_type="zstd")
    await producer.start()
    try:
        sent = []
        for start in range(0, events, 100):
            batch = [envelope(settings, run, n) for n in range(start, min(start + 100, events))]
            headers = [(PROJECT_HEADER, settings.default_project.encode()), (EVENTS_HEADER, str(len(batch)).encode())]
            sent.append(await producer.send(step_topic(settings, INDEX_STEP), encode_batch(batch),
                                            key=batch[0].key(), headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def configure(settings: Settings, destinations: list[dict]) -> None:
    store, writer = ProjectStore(settings), ProjectWriter(settings)
    await writer.start()
    await store.start()
    try:
        await ProjectAdmin(settings, store, writer).configure(settings.default_project, {"destinations": destinations})
    finally:
        await store.stop()
        await writer.stop()


def delivered(url: str) -> float:
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("headwater_forwarder_delivered_total{"))


def forward_alone(stack: Stack, settings: Settings, destination: dict, events: int) -> dict:
    """Fill the index topic, then run one forwarder process on ``destination`` until it delivered all."""
    asyncio.run(configure(settings, [destination]))
    run = f"fw{uuid.uuid4().hex[:8]}"
    asyncio.run(fill_index(settings, run, events))
    env = {**stack.env, "HEADWATER_METRICS_PORT": str(METRICS_PORT)}
    log = open(settings.local_path / "logs" / f"forwarder-{destination['name']}.log", "ab")
    process = subprocess.Popen(role_argv("forwarder", f"{settings.default_project}/{destination['name']}"),
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        while not delivered(url):
            time.sleep(0.05)
        started, cpu_start = time.perf_counter(), cpu_seconds(process.pid)
        first = delivered(url)
        while delivered(url) < events:
            if process.poll() is not None:
                raise RuntimeError(f"the forwarder stopped: see {log.name}")
            time.sleep(0.1)
        seconds, cpu = time.perf_counter() - started, cpu_seconds(process.pid) - cpu_start
    finally:
        process.terminate()
        process.wait(30)
    asyncio.run(configure(settings, []))
    measured = events - first
    return {"events": events, "events_per_s": round(measured / seconds, 1),
            "events_per_cpu_s": round(measured / cpu, 1) if cpu else None,
            "cpu_us_per_event": round(cpu / measured * 1e6, 1)}


async def read_only_us(settings: Settings, events: int) -> float:
    """CPU µs per event of reading and decoding the index topic's records, nothing sent."""
    consumer = make_consumer(settings, [step_topic(settings, INDEX_STEP)], f"bench-read-{uuid.uuid4().hex[:6]}")
    await consumer.start()
    try:
        seen, started = 0, time.process_time()
        while seen < events:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=500)).values():
                for record in records:
                    seen += len(decode_batch(record.value))
        return round((time.process_time() - started) / seen * 1e6, 1)
    finally:
        await consumer.stop()


def all_types(settings: Settings) -> list[dict]:
    receiver = f"http://127.0.0.1:{RECEIVER_PORT}"
    return [{"name": "hook", "type": "webhook", "settings": {"url": receiver + "/hook"}},
            {"name": "mirror", "type": "segment", "settings": {"url": receiver, "write_key": "bench"}},
            {"name": "stream", "type": "kafka",
             "settings": {"bootstrap_servers": settings.kafka_bootstrap, "topic": "bench-team-events"}},
            {"name": "lake", "type": "lake", "batch": {"max_events": 10_000, "max_ms": 5_000},
             "settings": {"url": f"file://{settings.local_path / 'lakes' / 'all'}"}}]


def main() -> None:
    base = get_settings()
    settings = fresh_stack_settings(base, BENCH_DIR)
    settings = dataclasses.replace(settings, forward_private_networks=True,
                                   forward_local_dir=str(settings.local_path / "lakes"))
    events = int(os.environ.get("BENCH_FORWARD_EVENTS", "200000"))
    e2e_events = int(os.environ.get("BENCH_FORWARD_E2E_EVENTS", "200000"))
    receiver = subprocess.Popen([sys.executable, "-m", "bench.receiver", "--port", str(RECEIVER_PORT)])
    stack = Stack(settings)
    result: dict = {}
    try:
        stack.start_servers()
        subprocess.run([*role_argv("topics")], env=stack.env, check=True, capture_output=True)
        asyncio.run(_create_team_topic(settings))
        hook = {"name": "hook", "type": "webhook", "batch": {"max_events": 100, "max_ms": 1_000},
                "settings": {"url": f"http://127.0.0.1:{RECEIVER_PORT}/hook"}}
        lake = {"name": "lake", "type": "lake", "batch": {"max_events": 10_000, "max_ms": 5_000},
                "settings": {"url": f"file://{settings.local_path / 'lakes' / 'alone'}"}}
        result["webhook_alone"] = forward_alone(stack, settings, hook, events)
        result["lake_alone"] = forward_alone(stack, settings, lake, events)
        s3 = S3Server(settings.local_path / "s3", S3_PORT)
        s3.start()
        try:
            (s3.root / "lake").mkdir(exist_ok=True)
            lake_s3 = {**lake, "settings": {"url": "s3://lake/bench", "endpoint": s3.endpoint, "scheme": "http",
                                            "access_key_id": s3.ACCESS_KEY, "secret_access_key": s3.SECRET_KEY}}
            result["lake_s3_alone"] = forward_alone(stack, settings, lake_s3, events)
        finally:
            s3.stop()
        result["engine_only_read_and_decode_us_per_event"] = asyncio.run(read_only_us(settings, events))
        result["end_to_end"] = added_cpu(stack, settings, e2e_events)
    finally:
        stack.stop()
        receiver.terminate()
    result.update(date=datetime.now(UTC).isoformat(timespec="seconds"), cores=os.cpu_count(),
                  rudderstack_published="RudderStack's own load tests (docs, 'infra provisioning'): on an "
                  "m5.large (2 cores, 8 GB) with PostgreSQL on a separate db.m4.xlarge, 1.7K events/s through "
                  "its gateway and processor; its router's per-destination figure is not published")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "forwarder.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


async def _create_team_topic(settings: Settings) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("bench-team-events", num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()


def added_cpu(stack: Stack, settings: Settings, events: int) -> dict:
    """The batched end-to-end load without destinations, then with one of each type on."""
    url = stack.collector_url
    stack.start_services()
    counter = Events(settings)
    warm_up(settings, url, counter, 100_000)
    _, _, without = end_to_end(settings, url, counter, events, settings.colocate_stateless_steps)
    asyncio.run(configure(settings, all_types(settings)))
    time.sleep(3)  # the forwarder starts them within a second
    already = received()
    shares, started = CpuShares(settings), time.perf_counter()
    _, load, with_all = end_to_end(settings, url, counter, events, settings.colocate_stateless_steps)
    acked = len(load["acked"])
    deadline = time.monotonic() + 300
    while received() - already < 2 * acked and time.monotonic() < deadline:  # the webhook's and Segment's
        time.sleep(0.2)
    cpu = shares.us_per_event(acked, time.perf_counter() - started)  # until the destinations had them all
    total_without, total_with = without["cpu"]["total_us_per_event"], cpu["total_us_per_event"]
    return {"events": events,
            "without_destinations": {"events_per_s": without["events_per_s"], "total_us_per_event": total_without},
            "with_one_of_each_type": {"events_per_s": with_all["events_per_s"], "total_us_per_event": total_with,
                                      "forwarder_us_per_event": cpu["us_per_event"].get("forwarder"),
                                      "delivered_to_the_receiver": received() - already},
            "added_us_per_event": round(total_with - total_without, 1)}


def received() -> int:
    return int(httpx.get(f"http://127.0.0.1:{RECEIVER_PORT}/", timeout=5).text)


if __name__ == "__main__":
    main()
