"""The collector's HTTP/1.1 protocol: uvicorn's, with the ingest POSTs answered without ASGI.

A POST to an ingest path (``/v1/track``, ``/v1/batch``, ...) costs a small event most of its CPU in
the ASGI machinery around it: the scope, the request-response cycle and its event, the receive and
send messages, Starlette's request and response objects (docs/performance.md, "The HTTP edge").
:class:`IngestProtocol` keeps uvicorn for everything a connection needs (parsing, keep-alive, the
header and body deadlines of :class:`~headwater.serving.GuardedProtocol`, the connection and
concurrency limits, graceful shutdown) and, for those POSTs only, collects the body itself up to
``max_request_bytes``, hands the whole request to :meth:`collector.app.Collector.handle` and writes
its answer straight to the transport.

What stays exactly as through ASGI: the answers (the same :class:`~collector.app.IngestRoute`
produces them), 200 only after Kafka acknowledged, ``Expect: 100-continue``, HTTP/1.0 and
``Connection: close``, a body over the limit answered 413 as soon as it is known (the rest of it is
read and dropped, the connection stays usable), a client that leaves before its body is complete
logged as ``client_disconnected``. Requests that take the ASGI path instead: a pipelined request
arriving while the previous answer is pending (uvicorn queues it), a percent-encoded path, and any
request past the concurrency limit (uvicorn's 503).
"""

from __future__ import annotations

from typing import Any

import httptools
import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from collector.body import over_limit
from collector.request import IngestRequest, headers_of
from headwater.serving import GuardedProtocol

log = structlog.get_logger()
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _NoEvent:
    """uvicorn's ``connection_lost`` wakes the cycle's reader; a direct cycle has none."""

    def set(self) -> None:
        pass


class DirectCycle:
    """One ingest POST answered without ASGI: uvicorn reads ``response_complete``, ``keep_alive``,
    ``disconnected`` and ``message_event`` of whatever cycle the connection holds."""

    __slots__ = ("route", "keep_alive", "chunks", "size", "oversized", "started", "disconnected",
                 "response_complete")
    message_event = _NoEvent()

    def __init__(self, route: Any, keep_alive: bool) -> None:
        self.route = route
        self.keep_alive = keep_alive
        self.chunks: list[bytes] = []
        self.size = 0
        self.oversized = False
        self.started = False
        self.disconnected = False
        self.response_complete = False


class IngestProtocol(GuardedProtocol):
    """uvicorn's protocol with the ingest POSTs answered directly (see the module's docstring)."""

    def _direct_route(self) -> Any:
        ingest_route = getattr(self.app, "ingest_route", None)
        if ingest_route is None or self.parser.get_method() != b"POST" or self.parser.should_upgrade():
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind an unanswered request: uvicorn queues it
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            return None  # uvicorn answers 503
        return ingest_route(httptools.parse_url(self.url).path)

    def on_headers_complete(self) -> None:
        route = self._direct_route()
        if route is None:
            super().on_headers_complete()
            return
        self._arm(self.body_timeout_s)
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        self.cycle = cycle = DirectCycle(route, keep_alive)  # type: ignore[assignment]
        declared = next((value for name, value in self.headers if name == b"content-length"), None)
        if declared is not None and over_limit(declared.decode("latin-1"), self.app.max_request_bytes):
            cycle.oversized = True
            self._start(cycle)
        elif self.expect_100_continue:
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not DirectCycle:
            super().on_body(body)
            return
        if cycle.started:  # answered 413 already: the rest is dropped
            return
        cycle.size += len(body)
        if cycle.size > self.app.max_request_bytes:
            cycle.oversized, cycle.chunks = True, []
            self._start(cycle)
            return
        cycle.chunks.append(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not DirectCycle:
            super().on_message_complete()
            return
        self._disarm()
        if not cycle.started:
            self._start(cycle)

    def connection_lost(self, exc: Exception | None) -> None:
        cycle = self.cycle
        if type(cycle) is DirectCycle and not cycle.started:
            log.info("client_disconnected", route=cycle.route.path)
        super().connection_lost(exc)

    def _start(self, cycle: DirectCycle) -> None:
        cycle.started = True
        request = IngestRequest(headers_of(self.headers), self.client[0] if self.client else None,
                                b"".join(cycle.chunks), cycle.oversized)
        cycle.chunks = []
        task = self.loop.create_task(self._answer(cycle, request))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer(self, cycle: DirectCycle, request: IngestRequest) -> None:
        answer = await self.app.handle(cycle.route, request)
        if cycle.disconnected or self.transport.is_closing():
            return
        out = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.raw_headers()):
            out += [name, b": ", value, b"\r\n"]
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out += [b"\r\n", answer.body]
        self.transport.write(b"".join(out))
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
