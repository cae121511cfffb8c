"""The collector's Starlette application: routes, CORS, health, metrics and the OpenAPI document."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.auth import public_project
from collector.errors import ApiError
from collector.ingest import BATCH, COMPACT, EVENT_TYPES, SHORT_PATHS, Ingest
from collector.metrics import CollectorMetrics
from collector.openapi import openapi_document
from collector.scripts import SCRIPTS, load_scripts, serve_script
from collector.sink import KafkaSink, Unavailable, collector_producer
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.service import tune_gc
from headwater.settings import Settings, get_settings
from headwater.topics import raw_topic

log = structlog.get_logger()
PREFLIGHT_MAX_AGE = "86400"


def cors_headers(request: Request, project: Project | None) -> dict[str, str]:
    """The CORS headers for an origin that ``project`` allows, on every answer, errors included: without
    them a browser sees a 4xx as a network error and its SDK retries the request for ever."""
    origin = request.headers.get("origin")
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


def make_ingest_route(route: str, call: str):
    async def ingest(request: Request) -> Response:
        state = request.app.state
        started = time.perf_counter()
        state.metrics.in_flight.inc()
        project_id, accepted, rejected = None, 0, 0
        try:
            result = await state.ingest.accept(request, call)
            project_id, rejected = result.project.id, result.rejected
            produce_started = time.perf_counter()
            await state.sink.publish(result.envelopes)
            state.metrics.produce_seconds.observe(time.perf_counter() - produce_started)
            accepted = len(result.envelopes)
            body: dict[str, object] = {"success": True}
            if result.errors:
                body.update(accepted=accepted, rejected=rejected, errors=result.errors, error_count=rejected)
            response = JSONResponse(body, headers=cors_headers(request, result.project))
        except Unavailable as exc:
            response = ApiError(503, "kafka_unavailable", f"events not stored, retry later: {exc}",
                                headers={"Retry-After": "5", **cors_headers(request, result.project)}).response()
        except ApiError as exc:
            project = exc.project or public_project(state.store, request)
            response = exc.with_headers(cors_headers(request, project)).response()
            state.metrics.rejected.labels(exc.reason).inc()
        finally:
            state.metrics.in_flight.dec()
        state.metrics.requests.labels(route, response.status_code).inc()
        state.metrics.accepted.inc(accepted)
        if rejected:
            state.metrics.rejected.labels("invalid_event").inc(rejected)
        if state.settings.access_log:
            log.info("request", route=route, status=response.status_code, project=project_id, accepted=accepted,
                     rejected=rejected, ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    return ingest


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
    ingest = []
    for path, call in ingest_paths().items():
        ingest.append(Route(f"/v1/{path}", make_ingest_route(f"/v1/{path}", call), methods=["POST"]))
        ingest.append(Route(f"/v1/{path}", preflight, methods=["OPTIONS"]))
    return [
        Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics.endpoint),
        Route("/openapi.json", openapi), *(Route(f"/{name}", serve_script) for name in SCRIPTS), *ingest,
    ]


class Collector:
    """The ASGI entry point. A POST to an ingest path goes straight to its handler, skipping
    Starlette's router and middleware stack, which cost about a fifth of a small request's CPU (see
    docs/performance.md); everything else, lifespan included, goes through the Starlette app."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state
        self.handlers = {f"/v1/{path}": make_ingest_route(f"/v1/{path}", call)
                         for path, call in ingest_paths().items()}

    async def __call__(self, scope, receive, send) -> None:
        handler = self.handlers.get(scope.get("path")) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        try:
            response = await handler(Request(scope, receive))
        except ClientDisconnect:  # the client went away before its body arrived: nobody to answer
            log.info("client_disconnected", route=scope["path"])
            return
        except Exception:  # a bug: answer like Starlette's error middleware would, and log it
            log.exception("unhandled_error", route=scope["path"])
            response = JSONResponse({"success": False, "reason": "internal_error", "code": "internal_error",
                                     "message": "internal error"}, status_code=500)
        await response(scope, receive, send)


def create_app(settings: Settings | None = None) -> Collector:
    settings = settings or get_settings()
    metrics = CollectorMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        producer = collector_producer(settings)
        await producer.start()
        partitions = PartitionMap()
        await partitions.load(producer, [raw_topic(settings)])
        store = ProjectStore(settings)
        await store.start()
        app.state.store = store
        app.state.sink = KafkaSink(settings, producer, partitions)
        app.state.ingest = Ingest(settings, store)
        tune_gc()
        try:
            yield
        finally:
            await store.stop()
            await app.state.sink.producer.stop()  # the sink may have replaced the first producer

    app = Starlette(routes=routes(metrics), lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.scripts = load_scripts(Path(settings.tracker_dir))
    return Collector(app)
