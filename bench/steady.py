"""A sender at a steady rate, in its own thread: batches of 50 events with known message ids
(``<run_id>-<n>``), each tagged with the phase it was sent in; it keeps which were answered 200.
Used by `make chaos` (faults while it sends) and `make bench` (latency at a steady load)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx

from bench.events import event

BATCH = 50


class Sender(threading.Thread):
    """Posts batches at a steady rate, tagging each with the current phase; keeps what was answered."""

    def __init__(self, url: str, key: str, run_id: str, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.run_id, self.rate = url, key, run_id, rate
        self.phase = "baseline"
        self.sent: dict[str, str] = {}  # message id -> phase
        self.acked: set[str] = set()
        self.statuses: Counter = Counter()
        self.stopping = threading.Event()

    def batch(self, start: int) -> list[dict]:
        """The benchmarks' realistic events (:mod:`bench.events`), with visitors of this run only."""
        events = [event(self.run_id, n) for n in range(start, start + BATCH)]
        for n, sent in enumerate(events, start):
            sent["anonymousId"] = f"{self.run_id}-visitor-{n % 400}"
        return events

    def run(self) -> None:
        n, interval = 0, BATCH / self.rate
        with httpx.Client(auth=(self.key, ""), timeout=10) as client:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                events = self.batch(n)
                n += BATCH
                phase = self.phase
                for event in events:
                    self.sent[event["messageId"]] = phase
                try:
                    status = client.post(f"{self.url}/v1/batch", json={"batch": events}).status_code
                except httpx.HTTPError:
                    status = "error"
                self.statuses[(phase, status)] += 1
                if status == 200:
                    self.acked.update(e["messageId"] for e in events)
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
