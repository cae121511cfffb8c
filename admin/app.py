"""The admin API's Starlette application.

Every route needs ``Authorization: Bearer <admin_token>``. It listens on its own port (default
127.0.0.1:8081), apart from the public collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from typing import Annotated, TypeVar

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from analytics.catalogue import MAX_CATALOGUE_DAYS, project_catalogue
from headwater.projects.admin import MAX_GRACE_S, ProjectAdmin, ProjectError, describe
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.settings import Settings, get_settings
from headwater.tags.admin import ContainerAdmin
from headwater.tags.store import ContainerStore

T = TypeVar("T")


def error(status: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "reason": reason, "message": message}, status_code=status)


MAX_BODY_BYTES = 1 << 20


class CreateProject(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    name: str = ""
    origins: list[str] = []


class SetOrigins(msgspec.Struct, forbid_unknown_fields=True):
    origins: list[str]


class RotateKeys(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_GRACE_S)] | None = None


class ReplayDestination(msgspec.Struct, forbid_unknown_fields=True):
    from_ms: Annotated[int, msgspec.Meta(ge=0)]


class SaveContainer(msgspec.Struct, forbid_unknown_fields=True):
    definition: dict
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    rev: int | None = None  # the draft_rev this edit started from: a 409 if the draft changed since


class Publish(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class Rollback(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]


class AddSchema(msgspec.Struct, forbid_unknown_fields=True):
    event: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    version: str
    schema: dict


async def body_as(request: Request, kind: type[T]) -> T:
    """The body decoded into ``kind`` (types checked, booleans are not numbers, unknown fields refused),
    or a 400 that names the field and what is wrong with it."""
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ProjectError(f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ProjectError(f"the body is not what this call takes: {exc}") from exc
    except RecursionError:  # arrays or objects nested thousands deep
        raise ProjectError("the body is nested too deeply") from None


async def body_of(request: Request) -> dict:
    """A body that is an object of changes, each checked by the project checks."""
    return await body_as(request, dict)


def handler(operation):
    """Wrap an operation: check the token, map project errors to 4xx answers."""

    async def endpoint(request: Request) -> JSONResponse:
        token = request.app.state.settings.admin_token
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return error(401, "unauthorized", "send Authorization: Bearer <admin token>")
        try:
            return await operation(request, request.app.state.admin)
        except ProjectError as exc:
            return error(exc.status, type(exc).__name__, str(exc))

    return endpoint


async def list_projects(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"projects": [describe(p) for p in admin.list()]})


async def create_project(request: Request, admin: ProjectAdmin) -> JSONResponse:
    body = await body_as(request, CreateProject)
    project, keys = await admin.create(body.id, body.name, body.origins)
    return JSONResponse({"project": describe(project), "keys": vars(keys)}, status_code=201)


async def get_project(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"project": describe(admin.get(request.path_params["id"]))})


async def set_origins(request: Request, admin: ProjectAdmin) -> JSONResponse:
    origins = (await body_as(request, SetOrigins)).origins
    return JSONResponse({"project": describe(await admin.set_origins(request.path_params["id"], origins))})


async def rotate_keys(request: Request, admin: ProjectAdmin) -> JSONResponse:
    grace = (await body_as(request, RotateKeys)).grace_seconds
    if grace is None:
        grace = request.app.state.settings.key_grace_s
    project, keys = await admin.rotate_keys(request.path_params["id"], grace)
    return JSONResponse({"project": describe(project), "keys": vars(keys)})


async def disable(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"project": describe(await admin.set_enabled(request.path_params["id"], False))})


async def enable(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"project": describe(await admin.set_enabled(request.path_params["id"], True))})


async def configure(request: Request, admin: ProjectAdmin) -> JSONResponse:
    body = await body_of(request)
    return JSONResponse({"project": describe(await admin.configure(request.path_params["id"], body))})


async def add_schema(request: Request, admin: ProjectAdmin) -> JSONResponse:
    body = await body_as(request, AddSchema)
    project = await admin.add_schema(request.path_params["id"], body.event, body.version, body.schema)
    return JSONResponse({"project": describe(project)}, status_code=201)


async def list_schemas(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"schemas": admin.schemas(request.path_params["id"])})


async def show_schema(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse(admin.schema(request.path_params["id"], request.path_params["event"]))


async def delete_schema(request: Request, admin: ProjectAdmin) -> JSONResponse:
    project = await admin.delete_schema(request.path_params["id"], request.path_params["event"],
                                        request.query_params.get("version"))
    return JSONResponse({"project": describe(project)})


async def catalogue(request: Request, admin: ProjectAdmin) -> JSONResponse:
    """The project's event catalogue over the last ``days`` (default 30), with each event's schemas."""
    project = admin.get(request.path_params["id"])
    days = request.query_params.get("days", "30")
    if not days.isdigit() or not 1 <= int(days) <= MAX_CATALOGUE_DAYS:
        raise ProjectError(f"days is a whole number from 1 to {MAX_CATALOGUE_DAYS}")
    return JSONResponse(await asyncio.to_thread(project_catalogue, request.app.state.settings, project, int(days)))


async def rotate_hash_key(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"project": describe(await admin.rotate_hash_key(request.path_params["id"]))})


async def issue_read_token(request: Request, admin: ProjectAdmin) -> JSONResponse:
    project, token = await admin.issue_read_token(request.path_params["id"])
    return JSONResponse({"project": describe(project), "read_token": token}, status_code=201)


async def revoke_read_tokens(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"project": describe(await admin.revoke_read_tokens(request.path_params["id"]))})


async def pause_destination(request: Request, admin: ProjectAdmin) -> JSONResponse:
    project = await admin.set_destination_paused(request.path_params["id"], request.path_params["name"], True)
    return JSONResponse({"project": describe(project)})


async def resume_destination(request: Request, admin: ProjectAdmin) -> JSONResponse:
    project = await admin.set_destination_paused(request.path_params["id"], request.path_params["name"], False)
    return JSONResponse({"project": describe(project)})


async def test_alert(request: Request, admin: ProjectAdmin) -> JSONResponse:
    """Raise a test alert of one rule, for its channels (see ProjectAdmin.send_test_alert)."""
    alert_id = await admin.send_test_alert(request.path_params["id"], request.path_params["rule"])
    return JSONResponse({"alert_id": alert_id}, status_code=202)


async def replay_destination(request: Request, admin: ProjectAdmin) -> JSONResponse:
    """Deliver the destination's events again from ``from_ms`` (see ProjectAdmin.replay_destination)."""
    body = await body_as(request, ReplayDestination)
    name = request.path_params["name"]
    offsets = await admin.replay_destination(request.path_params["id"], name, body.from_ms)
    return JSONResponse({"destination": name, "offsets": {str(p): o for p, o in offsets.items()}})


def _container(request: Request) -> tuple[ContainerAdmin, str, str]:
    return request.app.state.containers, request.path_params["id"], request.path_params["container"]


async def list_containers(request: Request, admin: ProjectAdmin) -> JSONResponse:
    return JSONResponse({"containers": request.app.state.containers.summaries(request.path_params["id"])})


async def get_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    containers, project_id, container = _container(request)
    return JSONResponse({"container": containers.get(project_id, container)})


async def save_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    """Save a container's draft (creating it): the definition, checked (docs/tags.md)."""
    body = await body_as(request, SaveContainer)
    containers, project_id, container = _container(request)
    head = await containers.save(project_id, container, body.name, body.definition, body.rev)
    return JSONResponse({"container": head})


async def delete_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    containers, project_id, container = _container(request)
    await containers.delete(project_id, container)
    return JSONResponse({"deleted": container})


async def publish_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    body = await body_as(request, Publish)
    containers, project_id, container = _container(request)
    return JSONResponse({"container": await containers.publish(project_id, container, body.note)})


async def rollback_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    body = await body_as(request, Rollback)
    containers, project_id, container = _container(request)
    return JSONResponse({"container": await containers.rollback(project_id, container, body.version)})


async def container_version(request: Request, admin: ProjectAdmin) -> JSONResponse:
    containers, project_id, container = _container(request)
    number = request.path_params["version"]
    if not number.isdigit() or len(number) > 9:
        raise ProjectError("a version is a whole number")
    return JSONResponse({"version": containers.version(project_id, container, int(number))})


async def preview_container(request: Request, admin: ProjectAdmin) -> JSONResponse:
    """A preview token: open a page of the site with ``?hw_tm_preview=TOKEN`` to run the draft there."""
    containers, project_id, container = _container(request)
    token = containers.preview_token(project_id, container)
    return JSONResponse({"token": token, "page_parameter": f"hw_tm_preview={token}",
                         "expires_in_s": request.app.state.settings.tags_preview_s}, status_code=201)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_app(check_project: Callable[[Project], list[str]], settings: Settings | None = None) -> Starlette:
    """The admin API. ``check_project`` lists a project configuration's problems (the processors'
    checks, given by the command that runs the role); a change with any is refused."""
    settings = settings or get_settings()
    if not settings.admin_token:
        raise SystemExit("the admin API needs HEADWATER_ADMIN_TOKEN")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        store, writer, containers = ProjectStore(settings), ProjectWriter(settings), ContainerStore(settings)
        await writer.start()
        await store.start()
        await containers.start()
        app.state.admin = ProjectAdmin(settings, store, writer, check_project)
        app.state.containers = ContainerAdmin(settings, store, containers, writer)
        try:
            yield
        finally:
            await containers.stop()
            await store.stop()
            await writer.stop()

    routes = [
        Route("/healthz", healthz),
        Route("/v1/projects", handler(list_projects), methods=["GET"]),
        Route("/v1/projects", handler(create_project), methods=["POST"]),
        Route("/v1/projects/{id}", handler(get_project), methods=["GET"]),
        Route("/v1/projects/{id}/origins", handler(set_origins), methods=["PUT"]),
        Route("/v1/projects/{id}/rotate-keys", handler(rotate_keys), methods=["POST"]),
        Route("/v1/projects/{id}/disable", handler(disable), methods=["POST"]),
        Route("/v1/projects/{id}/enable", handler(enable), methods=["POST"]),
        Route("/v1/projects/{id}/config", handler(configure), methods=["PATCH"]),
        Route("/v1/projects/{id}/schemas", handler(add_schema), methods=["POST"]),
        Route("/v1/projects/{id}/schemas", handler(list_schemas), methods=["GET"]),
        # an event name may hold a "/": the rest of the path is the name; a version is a query parameter
        Route("/v1/projects/{id}/schemas/{event:path}", handler(show_schema), methods=["GET"]),
        Route("/v1/projects/{id}/schemas/{event:path}", handler(delete_schema), methods=["DELETE"]),
        Route("/v1/projects/{id}/catalogue", handler(catalogue), methods=["GET"]),
        Route("/v1/projects/{id}/rotate-hash-key", handler(rotate_hash_key), methods=["POST"]),
        Route("/v1/projects/{id}/read-tokens", handler(issue_read_token), methods=["POST"]),
        Route("/v1/projects/{id}/read-tokens", handler(revoke_read_tokens), methods=["DELETE"]),
        Route("/v1/projects/{id}/destinations/{name}/pause", handler(pause_destination), methods=["POST"]),
        Route("/v1/projects/{id}/destinations/{name}/resume", handler(resume_destination), methods=["POST"]),
        Route("/v1/projects/{id}/destinations/{name}/replay", handler(replay_destination), methods=["POST"]),
        Route("/v1/projects/{id}/alerts/{rule}/test", handler(test_alert), methods=["POST"]),
        Route("/v1/projects/{id}/containers", handler(list_containers), methods=["GET"]),
        Route("/v1/projects/{id}/containers/{container}", handler(get_container), methods=["GET"]),
        Route("/v1/projects/{id}/containers/{container}", handler(save_container), methods=["PUT"]),
        Route("/v1/projects/{id}/containers/{container}", handler(delete_container), methods=["DELETE"]),
        Route("/v1/projects/{id}/containers/{container}/publish", handler(publish_container), methods=["POST"]),
        Route("/v1/projects/{id}/containers/{container}/rollback", handler(rollback_container), methods=["POST"]),
        Route("/v1/projects/{id}/containers/{container}/versions/{version}", handler(container_version),
              methods=["GET"]),
        Route("/v1/projects/{id}/containers/{container}/preview", handler(preview_container), methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    return app
