"""The collector's Starlette application."""

from __future__ import annotations

import contextlib
import time

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from collector.errors import ApiError
from collector.ingest import EVENT_TYPES, SHORT_PATHS, accept, read_json
from collector.sink import KafkaSink, Unavailable
from headwater.kafka import make_producer
from headwater.partitioning import PartitionMap
from headwater.topics import raw_topic
from headwater.settings import Settings, get_settings

log = structlog.get_logger()


def make_ingest_route(call: str):
    async def ingest(request: Request) -> JSONResponse:
        started = time.perf_counter()
        accepted = 0
        try:
            settings: Settings = request.app.state.settings
            payload = await read_json(request)
            envelopes, errors = accept(settings, request, payload, call)
            if not envelopes:
                raise ApiError(400, "invalid_envelope", "no valid event in the request", errors)
            await request.app.state.sink.publish(envelopes)
            accepted = len(envelopes)
            body = {"success": True, **({"errors": errors, "rejected": len({e["index"] for e in errors})} if errors else {})}
            response = JSONResponse(body)
        except Unavailable as exc:
            response = ApiError(503, "kafka_unavailable", f"events not stored, retry: {exc}",
                                headers={"Retry-After": "5"}).response()
        except ApiError as exc:
            response = exc.response()
        log.info("request", route=call, status=response.status_code, accepted=accepted,
                 ms=round((time.perf_counter() - started) * 1000, 2))
        return response

    return ingest


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    if await request.app.state.sink.ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "kafka unreachable"}, status_code=503)


def routes() -> list[Route]:
    calls = {**{c: c for c in EVENT_TYPES}, **SHORT_PATHS, "batch": "batch", "b": "batch"}
    ingest = [Route(f"/v1/{path}", make_ingest_route(call), methods=["POST"]) for path, call in calls.items()]
    return [Route("/healthz", healthz), Route("/readyz", readyz), *ingest]


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        producer = make_producer(settings)
        await producer.start()
        partitions = PartitionMap()
        await partitions.load(producer, [raw_topic(settings)])
        app.state.sink = KafkaSink(settings, producer, partitions)
        try:
            yield
        finally:
            await producer.stop()

    app = Starlette(routes=routes(), lifespan=lifespan)
    app.state.settings = settings
    return app
