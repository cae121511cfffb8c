"""The load generator: a separate process that posts events and reports what was acknowledged.

Each event (:mod:`bench.events`: shaped like analytics.js's, about 750 bytes) carries a messageId
``<run>-<n>``, so the harness can count losses and duplicates in ClickHouse. It writes one JSON object to the file named by ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
import uvloop

from bench.events import event
from bench.http import Connection


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def phase(url_host: str, port: int, key: str, bodies, concurrency: int, path: str,
                rate: float | None = None) -> dict:
    """Post every body from ``bodies`` over ``concurrency`` connections; optional target rate (req/s)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    acked: list[int] = []
    started, started_at = time.perf_counter(), time.time()
    shared = enumerate(bodies)  # one iterator for all workers: each item goes to exactly one

    async def worker() -> None:
        conn = Connection(url_host, port, key)
        for index, (ids, body) in shared:
            if rate:
                due = started + index / rate
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
            try:
                status, seconds = await conn.post(path, body)
            except (OSError, asyncio.IncompleteReadError):
                conn.close()
                status, seconds = 599, 0.0
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(seconds)
            if status == 200:
                acked.extend(ids)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = max(time.perf_counter() - started, 1e-9)
    return {
        "requests": len(latencies), "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1), "events_acked": len(acked),
        "events_per_s": round(len(acked) / elapsed, 1), "statuses": statuses,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2), "acked": acked,
        "started_at": started_at, "ended_at": time.time(),
    }


def single_bodies(run: str, start: int, count: int):
    for n in range(start, start + count):
        yield [n], orjson.dumps(event(run, n))


def batch_bodies(run: str, start: int, count: int, size: int):
    for first in range(start, start + count, size):
        ids = list(range(first, min(first + size, start + count)))
        yield ids, orjson.dumps({"batch": [event(run, n) for n in ids]})


async def main(args: argparse.Namespace) -> dict:
    """Three phases: single events flat out, batches flat out, then single events at half the
    single-event maximum, to read the latency a collector shows when it is not saturated."""
    host, _, port = args.url.removeprefix("http://").partition(":")
    post = lambda bodies, path, rate=None: phase(  # noqa: E731
        host, int(port), args.key, bodies, args.concurrency, path, rate)
    single = await post(single_bodies(args.run, 0, args.single), "/v1/track")
    start = args.single
    batch_rate = args.batch_rate / args.batch_size if args.batch_rate else None  # requests per second
    batch = await post(batch_bodies(args.run, start, args.batched, args.batch_size), "/v1/batch", batch_rate)
    start += args.batched
    half_rate = single["requests_per_s"] / 2
    half_count = int(half_rate * args.half_load_s)
    half = await post(single_bodies(args.run, start, half_count), "/v1/track", half_rate)
    half["target_requests_per_s"] = round(half_rate, 1)
    return {"single": single, "batch": batch, "single_half_load": half}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--single", type=int, default=20_000)
    parser.add_argument("--batched", type=int, default=180_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--half-load-s", type=float, default=10.0)
    parser.add_argument("--batch-rate", type=float, default=0, help="events per second in batches; 0: flat out")
    parser.add_argument("--out", required=True, help="where to write the result (JSON)")
    args = parser.parse_args()
    result = uvloop.run(main(args))
    # a file, not stdout: a pipe the event loop left non-blocking cut the result at 128 KB, twice
    with open(args.out, "wb") as out:
        out.write(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))
