"""Serving an ASGI application (the collector, the admin API, the dashboard) with uvicorn, bounded
against slow and idle clients.

uvicorn closes an idle keep-alive connection after ``http_keepalive_s`` but has no deadline for a
request's headers or body, so a connection that never sends a request, or sends its headers a byte at
a time (Slowloris), stays open for ever. :class:`GuardedProtocol` adds both deadlines:

- the headers of a request must be complete within ``http_header_timeout_s`` of the connection
  opening or of the request's first byte, else the connection is closed;
- the body must be complete within ``http_body_timeout_s`` of the headers, else the connection is
  closed (the application sees the client disconnect).

``http_max_connections`` caps open connections and requests in flight (uvicorn answers 503 past
it). Forwarding headers are never believed by the server itself (``proxy_headers`` off): the
collector reads them only from ``trusted_proxies`` (collector/network.py).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from headwater.settings import Settings


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines (class attributes, set by
    :func:`guarded_protocol`)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0
    deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expire(self) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._arm(self.body_timeout_s)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def guarded_protocol(settings: Settings, base: type[GuardedProtocol] = GuardedProtocol) -> type[GuardedProtocol]:
    """``base`` with the settings' deadlines."""
    return type("Guarded", (base,), {"header_timeout_s": settings.http_header_timeout_s,
                                                "body_timeout_s": settings.http_body_timeout_s})


def serve(factory, settings: Settings, host: str, port: int,
          protocol: type[GuardedProtocol] = GuardedProtocol) -> None:
    """Run ``factory()``'s application until SIGTERM or SIGINT, each connection handled by
    ``protocol`` (a :class:`GuardedProtocol`) with the settings' deadlines."""
    import uvicorn

    uvicorn.run(
        factory, factory=True, host=host, port=port, loop="uvloop", http=guarded_protocol(settings, protocol),
        proxy_headers=False, server_header=False, access_log=False, log_level="warning",
        timeout_keep_alive=settings.http_keepalive_s, limit_concurrency=settings.http_max_connections,
    )
