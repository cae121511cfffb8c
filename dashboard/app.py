"""``headwater dashboard``: pre-built pages over the query library, for each project.

Pages: overview, funnels, retention, live, sessions (with each session's timeline), failed events
(admin only, with replay) and the flow (admin only: the flow's graph, the event catalogue, editing).
Every page reads ClickHouse only through the query library; every block links to the SQL it ran. The
URL holds a view's whole state (:mod:`dashboard.state`); access is by the admin token or a project's
read token (:mod:`dashboard.access`). Charts are drawn by uPlot, bundled at build time into
``dashboard/static`` (``make install``; no CDN).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from clickhouse_driver.errors import ServerException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from analytics.filters import FilterError
from analytics.queries import QueryError
from dashboard import pages
from dashboard.access import COOKIE, Sessions, from_this_site, viewer_for, viewer_of
from dashboard.api import PREFIX, StatsAPI, query_refusal
from dashboard.rendering import ADMIN_ONLY, NAV, STATIC, form_fields, problem, render, templates
from dashboard.runner import QueryRunner
from dashboard.state import StateError, parse_state
from dashboard.stats_openapi import openapi_document
from headwater.destination_status import StatusBoard
from headwater.projects.admin import ProjectAdmin
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore, ProjectWriter
from headwater.replay import Revalidator
from headwater.settings import Settings, get_settings
from headwater.tags.admin import ContainerAdmin
from headwater.tags.store import ContainerStore


def guarded(view: str):
    """A project page: the viewer must be logged in and may see the project (and be an admin for
    admin-only pages); the URL state must parse. Bad state answers 400 with the reason."""

    def wrap(handler):
        async def endpoint(request: Request) -> Response:
            viewer = viewer_of(request)
            if viewer is None and request.url.path.endswith(".json"):
                return problem(request, 401, "Log in", "send Authorization: Bearer <admin or read token>")
            if viewer is None:
                return RedirectResponse("/login?next=" + quote(request.url.path + "?" + request.url.query), 303)
            project_id = request.path_params["project"]
            project = request.app.state.store.get(project_id)
            if project is None or not viewer.may_see(project_id):
                return problem(request, 404, "No such project", f"There is no project {project_id!r} you may see.")
            if view in ADMIN_ONLY and not viewer.admin:
                return problem(request, 403, "Admins only", "This page needs the admin token; log in with it.")
            try:
                state = parse_state(request.query_params)
                state = state.resolve(project.id, project.cohorts, project.goals)
            except (StateError, FilterError) as exc:
                return problem(request, 400, "Cannot show this view", str(exc))
            try:
                return await handler(request, {"viewer": viewer, "project": project, "state": state, "view": view})
            except QueryError as exc:
                return problem(request, 400, "Cannot run this query", str(exc))
            except ServerException as exc:
                if (refused := query_refusal(exc, request.app.state.settings)) is None:
                    raise
                return problem(request, *refused)

        return endpoint

    return wrap


async def login_form(request: Request) -> Response:
    return render(request, "login.html", {"viewer": None, "next": _safe_next(request.query_params.get("next")),
                                          "error": ""})


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or urlsplit(target).netloc:
        return "/"
    return target


def cross_site(request: Request) -> Response:
    return problem(request, 403, "Refused", "post this form from the dashboard's own pages")


async def login(request: Request) -> Response:
    if not from_this_site(request):
        return cross_site(request)
    form = await form_fields(request)
    token, target = str(form.get("token") or "").strip(), _safe_next(str(form.get("next") or ""))
    settings = request.app.state.settings
    if viewer_for(token, settings.admin_token, request.app.state.store) is None:
        error = "That token opens nothing: use the admin token or a read token."
        return render(request, "login.html", {"viewer": None, "next": target, "error": error}, 401)
    response = RedirectResponse(target, 303)
    response.set_cookie(COOKIE, request.app.state.sessions.cookie_for(token, settings.admin_token),
                        max_age=int(settings.dashboard_session_hours * 3600), httponly=True, samesite="lax",
                        secure=settings.dashboard_cookie_secure)
    return response


async def logout(request: Request) -> Response:
    if not from_this_site(request):
        return cross_site(request)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE)
    return response


async def home(request: Request) -> Response:
    viewer = viewer_of(request)
    if viewer is None:
        return RedirectResponse("/login", 303)
    visible = sorted((p for p in request.app.state.store.projects.values() if viewer.may_see(p.id)),
                     key=lambda p: p.id)
    if len(visible) == 1:
        return RedirectResponse(f"/p/{visible[0].id}/overview", 303)
    return render(request, "projects.html", {"viewer": viewer, "projects": visible})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(revalidator: Revalidator, settings: Settings | None = None,
               check_project: Callable[[Project], list[str]] | None = None) -> Starlette:
    """The dashboards. ``revalidator`` builds the validate step a replay of dead letters checks each
    event with, and ``check_project`` lists a project configuration's problems, as the admin API's
    (both given by the command that runs the role); without it the Flow page cannot save a flow."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        store = ProjectStore(settings)
        writer = ProjectWriter(settings) if check_project else None
        containers = ContainerStore(settings) if writer else None
        await store.start()
        if writer and containers and check_project:
            await writer.start()
            await containers.start()
            app.state.admin = ProjectAdmin(settings, store, writer, check_project)
            app.state.containers = ContainerAdmin(settings, store, containers, writer)
        app.state.store, app.state.runner = store, QueryRunner(settings)
        app.state.statuses = StatusBoard(settings)
        await app.state.statuses.start()
        try:
            yield
        finally:
            await app.state.statuses.stop()
            app.state.runner.close()
            if containers:
                await containers.stop()
            if writer:
                await writer.stop()
            await store.stop()

    stats = StatsAPI(settings)
    project_pages = [Route(f"/p/{{project}}/{view}", guarded(view)(getattr(pages, view))) for view, _ in NAV]
    routes = [
        Route("/healthz", healthz),
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *project_pages,
        Route("/p/{project}/live.json", guarded("live")(pages.live_json)),
        Route("/p/{project}/sessions/{session_id}", guarded("sessions")(pages.session)),
        Route("/p/{project}/people/{person_id:path}", guarded("people")(pages.person)),
        Route("/p/{project}/sql/{of}/{block}", guarded("sql")(pages.sql)),
        Route("/p/{project}/failed/replay", guarded("failed")(pages.replay), methods=["POST"]),
        Route("/p/{project}/flow", guarded("flow")(pages.save_flow), methods=["POST"]),
        Route("/p/{project}/destinations/{action:str}", guarded("destinations")(pages.destination_action),
              methods=["POST"]),
        Route("/p/{project}/alerts/{action:str}", guarded("alerts")(pages.alert_action), methods=["POST"]),
        Route("/p/{project}/tags/{action:str}", guarded("tags")(pages.tag_action), methods=["POST"]),
        Route("/p/{project}", guarded("overview")(pages.to_overview)),
        Route(f"{PREFIX}/openapi.json", lambda request: JSONResponse(openapi_document())),
        Route(f"{PREFIX}/projects/{{project}}/{{view}}", stats.endpoint),
        Route(f"{PREFIX}/projects/{{project}}/{{view}}/{{block}}", stats.endpoint),
        Mount("/static", StaticFiles(directory=str(STATIC), check_dir=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.settings = settings
    app.state.revalidator = revalidator
    app.state.admin = None
    app.state.containers = None
    app.state.templates = templates(settings.geoip_path)
    app.state.sessions = Sessions(settings.admin_token, settings.dashboard_session_hours * 3600, settings.secret_key)
    return app


# Scripts and styles come only from /static; style attributes carry the bars' widths; no framing.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                 b"style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                                 b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)
