"""The collector's Starlette application: routes, CORS, health, metrics and the OpenAPI document."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.auth import public_project
from collector.body import over_limit
from collector.containers import ContainerScripts, serve_container
from collector.errors import ApiError
from collector.ingest import BATCH, COMPACT, EVENT_TYPES, SHORT_PATHS, Ingest
from collector.metrics import CollectorMetrics
from collector.openapi import openapi_document
from collector.request import Answer, IngestRequest, headers_of
from collector.scripts import SCRIPTS, load_scripts, serve_script
from collector.sink import KafkaSink, Unavailable, collector_producer
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.service import tune_gc
from headwater.settings import Settings, get_settings
from headwater.tags.store import ContainerStore
from headwater.topics import raw_topic

log = structlog.get_logger()
PREFLIGHT_MAX_AGE = "86400"


def cors_headers(origin: str | None, project: Project | None) -> dict[str, str]:
    """The CORS headers for an origin that ``project`` allows, on every answer, errors included: without
    them a browser sees a 4xx as a network error and its SDK retries the request for ever."""
    if not origin or project is None or not project.origin_allowed(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def preflight(request: Request) -> Response:
    """Any origin may ask; the real request is then checked against its project's allowed origins."""
    headers = {
        "Access-Control-Allow-Origin": request.headers.get("origin", "*"),
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get(
            "access-control-request-headers", "authorization, content-type"),
        "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
        "Vary": "Origin",
    }
    return Response(status_code=204, headers=headers)


@dataclasses.dataclass(frozen=True, slots=True)
class IngestRoute:
    """One ingest path (``/v1/track``, ``/v1/batch``, ...) and the Segment call it takes."""

    path: str
    call: str

    async def answer(self, state, request: IngestRequest) -> Answer:
        """Accept, publish, answer: 200 only once Kafka acknowledged every accepted event."""
        started = time.perf_counter()
        state.metrics.in_flight += 1
        project_id, accepted, rejected = None, 0, 0
        origin = request.headers.get("origin")
        try:
            result = await state.ingest.accept(request, self.call)
            project_id, rejected = result.project.id, result.rejected
            produce_started = time.perf_counter()
            await state.sink.publish(result.envelopes)
            state.metrics.produce_seconds.observe(time.perf_counter() - produce_started)
            accepted = len(result.envelopes)
            body: dict[str, object] = {"success": True}
            if result.errors:
                body.update(accepted=accepted, rejected=rejected, errors=result.errors, error_count=rejected)
            answer = Answer.json(200, body, cors_headers(origin, result.project))
        except Unavailable as exc:
            answer = ApiError(503, "kafka_unavailable", f"events not stored, retry later: {exc}",
                              headers={"Retry-After": "5", **cors_headers(origin, result.project)}).answer()
        except ApiError as exc:
            project = exc.project or public_project(state.store, request)
            answer = exc.with_headers(cors_headers(origin, project)).answer()
            state.metrics.rejected.labels(exc.reason).inc()
        finally:
            state.metrics.in_flight -= 1
        state.metrics.count_request(self.path, answer.status)
        state.metrics.accepted.inc(accepted)
        if rejected:
            state.metrics.rejected.labels("invalid_event").inc(rejected)
        if state.settings.access_log:
            log.info("request", route=self.path, status=answer.status, project=project_id, accepted=accepted,
                     rejected=rejected, ms=round((time.perf_counter() - started) * 1000, 2))
        return answer


async def read_asgi_request(scope, receive, limit: int) -> IngestRequest | None:
    """The request an ASGI server hands over, its body read up to ``limit`` bytes (past it the rest
    is left unread and the request marked oversized); ``None`` when the client went away first."""
    client = scope.get("client")
    request = IngestRequest(headers_of(scope["headers"]), client[0] if client else None)
    if over_limit(request.headers.get("content-length"), limit):
        request.oversized = True
        return request
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            request.oversized = True
            return request
        chunks.append(chunk)
        more = message.get("more_body", False)
    request.body = b"".join(chunks)
    return request


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    if not state.store.loaded.is_set():
        return JSONResponse({"status": "project store loading"}, status_code=503)
    if not await state.sink.ready():
        return JSONResponse({"status": "kafka unreachable"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(openapi_document())


def ingest_paths() -> dict[str, str]:
    """URL path -> call, with Segment's short browser paths (/v1/t, /v1/b, ...) and the compact one."""
    return {**{c: c for c in EVENT_TYPES}, **SHORT_PATHS, BATCH: BATCH, "b": BATCH, "hw": COMPACT}


def routes(metrics: CollectorMetrics) -> list[Route]:
    """Every route but the ingest POSTs, which :class:`Collector` takes before the router (so another
    method on an ingest path is a 405)."""
    ingest = [Route(f"/v1/{path}", preflight, methods=["OPTIONS"]) for path in ingest_paths()]
    return [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics.endpoint),
        Route("/openapi.json", openapi), *(Route(f"/{name}", serve_script) for name in SCRIPTS), *ingest,
        Route("/tm/{project}/{file}", serve_container),
    ]


class Collector:
    """The ASGI entry point. A POST to an ingest path goes straight to its :class:`IngestRoute`,
    skipping Starlette's router and middleware stack, which cost about a fifth of a small request's
    CPU (see docs/performance.md); everything else, lifespan included, goes through the Starlette app.
    The collector's HTTP protocol (collector/protocol.py) reaches the ingest routes without ASGI
    through :meth:`ingest_route` and :meth:`handle`."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self.routes = {f"/v1/{path}": IngestRoute(f"/v1/{path}", call) for path, call in ingest_paths().items()}
        self.raw_routes = {path.encode(): route for path, route in self.routes.items()}
        self.max_request_bytes = self.state.settings.max_request_bytes

    def ingest_route(self, raw_path: bytes) -> IngestRoute | None:
        return self.raw_routes.get(raw_path)

    async def handle(self, route: IngestRoute, request: IngestRequest) -> Answer:
        """The route's answer; a bug is logged and answered like Starlette's error middleware would."""
        try:
            return await route.answer(self.state, request)
        except Exception:
            log.exception("unhandled_error", route=route.path)
            return Answer.json(500, {"success": False, "reason": "internal_error", "code": "internal_error",
                                     "message": "internal error"})

    async def __call__(self, scope, receive, send) -> None:
        route = self.routes.get(scope.get("path")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request = await read_asgi_request(scope, receive, self.state.settings.max_request_bytes)
        if request is None:  # the client went away before its body arrived: nobody to answer
            log.info("client_disconnected", route=route.path)
            return
        answer = await self.handle(route, request)
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.raw_headers()})
        await send({"type": "http.response.body", "body": answer.body})


def create_app(settings: Settings | None = None) -> Collector:
    settings = settings or get_settings()
    metrics = CollectorMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        producer = collector_producer(settings)
        await producer.start()
        partitions = PartitionMap()
        await partitions.load(producer, [raw_topic(settings)])
        store, containers = ProjectStore(settings), ContainerStore(settings)
        await store.start()
        await containers.start()
        app.state.store = store
        app.state.containers = ContainerScripts(settings, store, containers)
        app.state.sink = KafkaSink(settings, producer, partitions)
        app.state.ingest = Ingest(settings, store)
        tune_gc()
        try:
            yield
        finally:
            await containers.stop()
            await store.stop()
            await app.state.sink.producer.stop()  # the sink may have replaced the first producer

    app = Starlette(routes=routes(metrics), lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.scripts = load_scripts(Path(settings.tracker_dir))
    return Collector(app)
