"""The collector's Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response


class CollectorMetrics:
    """The counters every request updates. A labelled child and the in-flight count are kept at hand:
    ``labels()`` and a gauge's lock cost about 2 µs a request each (docs/performance.md)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("headwater_collector_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.accepted = Counter("headwater_collector_events_accepted", "events acknowledged by Kafka",
                                registry=self.registry)
        self.rejected = Counter("headwater_collector_events_rejected", "events refused, by reason",
                                ["reason"], registry=self.registry)
        self.produce_seconds = Histogram(
            "headwater_collector_produce_seconds", "time from handing events to Kafka until acknowledged",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry)
        self.in_flight = 0
        Gauge("headwater_collector_in_flight_requests", "requests being handled",
              registry=self.registry).set_function(lambda: self.in_flight)
        self._requests_by: dict[tuple[str, int], Counter] = {}

    def count_request(self, route: str, status: int) -> None:
        child = self._requests_by.get((route, status))
        if child is None:
            child = self._requests_by[route, status] = self.requests.labels(route, status)
        child.inc()

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
