"""Faust's windowed tables against the alerts role: ``python -m bench.faust``, into
bench/results/faust.json. Not part of ``make bench``: it is the measurement behind not building the
alerts on faust-streaming, which it installs (with its dependencies) into a virtualenv of its own,
``.local/faust-venv``, the first time, so Headwater itself never depends on it.

Both drain the same backlog: ``BENCH_FAUST_EVENTS`` (200,000) stored events (bench/events.py, in
records of 100, as the pipeline writes the index topic), with exactly-once processing (Kafka
transactions, the offsets committed with the state) and the state in a changelog topic, counting the
events in 10-minute tumbling windows:

- **the alerts role** (``headwater alerts``), with 50 threshold rules on one condition (counted once an
  event, then spread over each rule's windows once a poll);
- **a Faust agent** (faust-streaming, ``processing_guarantee="exactly_once"``, an in-memory store with
  its changelog), counting each matching event once in a tumbling windowed table.

Reported: events per second and CPU µs per event of each worker process, from its first commit until
its group has caught up.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from bench.alerts import configure
from bench.forwarder import fill_index
from bench.run import cpu_seconds, fresh_stack_settings
from devstack.stack import Stack, role_argv
from headwater.flow import INDEX_STEP
from headwater.kafka import kafka_connection
from headwater.settings import Settings, get_settings
from headwater.topics import ALERTS_GROUP, step_topic

BENCH_DIR = ".local/bench-faust"
VENV = Path(".local/faust-venv")
FAUST = "faust-streaming==0.15.3"  # BSD-3-Clause
FAUST_GROUP = "bench-faust"
RESULTS = Path(__file__).resolve().parent / "results"

APP = '''
from datetime import timedelta

import faust
import orjson

app = faust.App({group!r}, broker="kafka://{bootstrap}", processing_guarantee="exactly_once",
                store="memory://", topic_partitions={partitions}, web_enabled=False)
source = app.topic({topic!r}, value_serializer="raw", key_serializer="raw")
counts = app.Table("product-viewed", default=int, partitions={partitions}).tumbling(600, expires=timedelta(days=8))


@app.agent(source)
async def count(stream):
    async for value in stream:
        for envelope in orjson.loads(value):
            if envelope["event"].get("event") == "Product Viewed":
                counts["Product Viewed"] += 1
'''


def faust_venv() -> Path:
    """The virtualenv with faust-streaming, orjson and cramjam (the index topic is zstd-compressed)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", FAUST, "orjson", "cramjam"], check=True)
    return python


def threshold_rules() -> dict:
    return {"rules": [{"name": f"threshold-{i}", "kind": "threshold", "when": {"event": "Product Viewed"},
                       "window_s": 600, "change": {"against": "week", "drop_pct": 50}} for i in range(50)]}


async def committed(settings: Settings, group: str, topic: str) -> tuple[int, int]:
    """How many records ``group`` has committed of ``topic``, and how many the topic holds."""
    admin = AIOKafkaAdminClient(**kafka_connection(settings))
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
        except GroupCoordinatorNotAvailableError:  # the group has not committed yet
            offsets = {}
        reader = AIOKafkaConsumer(**kafka_connection(settings), isolation_level="read_committed")
        await reader.start()
        try:
            ends = await reader.end_offsets(tps)
        finally:
            await reader.stop()
        done = sum(max(offsets[tp].offset, 0) for tp in tps if tp in offsets)
        return done, sum(ends.values())
    finally:
        await admin.close()


def drain(settings: Settings, argv: list[str], env: dict, group: str, events: int, log: Path, cwd: str | None = None
          ) -> dict:
    """Start the worker on the backlog and time it from its first commit until it has caught up."""
    topic = step_topic(settings, INDEX_STEP)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        deadline = time.monotonic() + 600
        while asyncio.run(committed(settings, group, topic))[0] == 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} stopped or never committed: see {log}")
            time.sleep(0.1)
        first, total = asyncio.run(committed(settings, group, topic))
        started, cpu_start = time.perf_counter(), cpu_seconds(process.pid)
        done = first
        while done < total:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} stopped or fell behind: see {log}")
            time.sleep(0.2)
            done, total = asyncio.run(committed(settings, group, topic))
        seconds, cpu = time.perf_counter() - started, cpu_seconds(process.pid) - cpu_start
    finally:
        process.terminate()
        process.wait(30)
    measured = (total - first) * 100  # records of 100 events
    return {"events": events, "events_per_s": round(measured / seconds, 1),
            "cpu_us_per_event": round(cpu / measured * 1e6, 2), "seconds": round(seconds, 2)}


def main() -> None:
    settings = fresh_stack_settings(get_settings(), BENCH_DIR)
    events = int(os.environ.get("BENCH_FAUST_EVENTS", "200000"))
    python = faust_venv()
    stack = Stack(settings)
    result: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(), "faust": FAUST}
    try:
        stack.start_servers()  # topics, migrations and the default project too
        asyncio.run(configure(settings, {"alerts": threshold_rules()}))
        asyncio.run(fill_index(settings, f"faust{uuid.uuid4().hex[:6]}", events))
        logs = settings.local_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        result["alerts_role"] = drain(settings, role_argv("alerts"), stack.env, ALERTS_GROUP, events,
                                      logs / "alerts-drain.log")
        app_dir = settings.local_path / "faust-app"
        app_dir.mkdir(parents=True, exist_ok=True)
        (app_dir / "app.py").write_text(APP.format(group=FAUST_GROUP, bootstrap=settings.kafka_bootstrap,
                                                   partitions=settings.topic_partitions,
                                                   topic=step_topic(settings, INDEX_STEP)))
        result["faust_agent"] = drain(settings, [str(python.absolute()), "-m", "faust", "-A", "app", "worker", "-l",
                                                 "warn", "--without-web"],
                                      {**os.environ, "PYTHONPATH": str(app_dir)}, FAUST_GROUP, events,
                                      logs / "faust-drain.log", cwd=str(app_dir))
    finally:
        stack.stop()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faust.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
