"""Token buckets, by key: the collector keeps one per client IP (requests) and one per project
(events), the Stats API one per token (requests).

Each replica keeps its own buckets, so the effective limit is the configured one times the number of
replicas. Idle buckets are forgotten after a minute.
"""

from __future__ import annotations

import math
import time


class TokenBuckets:
    def __init__(self, rate: float, burst: float, idle_s: float = 60.0) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.idle_s = idle_s
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)
        self.last_sweep = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 when allowed, else the seconds to wait before retrying."""
        if not self.enabled:
            return 0.0
        now = time.monotonic()
        tokens, updated = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens < cost:
            self.buckets[key] = (tokens, now)
            return max((min(cost, self.burst) - tokens) / self.rate, 0.001)
        self.buckets[key] = (tokens - cost, now)
        if now - self.last_sweep > self.idle_s:
            self._sweep(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        self.last_sweep = now
        self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < self.idle_s}


class InFlight:
    """How many requests of each key are being answered; :meth:`enter` refuses one past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}

    def enter(self, key: str) -> bool:
        """Count a request of ``key`` in, unless ``limit`` of its requests are being answered already."""
        if self.counts.get(key, 0) >= self.limit:
            return False
        self.counts[key] = self.counts.get(key, 0) + 1
        return True

    def leave(self, key: str) -> None:
        left = self.counts.get(key, 0) - 1
        if left > 0:
            self.counts[key] = left
        else:
            self.counts.pop(key, None)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
