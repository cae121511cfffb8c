"""Serving tag manager containers: ``GET /tm/PROJECT/CONTAINER.js``, the container compiled into one script
(:mod:`headwater.tags.compile`).

- Without a query: the published version, ``Cache-Control: public, max-age=tags_max_age_s`` and a
  strong ETag (a publish or a rollback reaches browsers within that time, and a revalidation that
  finds the same script is an empty 304).
- ``?v=N``: version ``N`` as it was published, immutable (cached for a year).
- ``?preview=TOKEN``: the draft, with the debug panel, never cached, for a live preview token of
  this container (:mod:`headwater.tags.preview`). With a token that is not (expired, another
  container's), the published version, marked so that the page forgets the token.

Compiled scripts are kept (with their gzip form) until the container's records change.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from headwater.projects.store import ProjectStore
from headwater.settings import Settings
from headwater.tags import preview
from headwater.tags.compile import compile_container
from headwater.tags.model import DefinitionError, parse_definition
from headwater.tags.store import ContainerStore

log = structlog.get_logger()
RUNTIME = "hw-tm.js"
YEAR_S = 365 * 86_400
MAX_CACHED = 1000


def not_found(code: str, message: str) -> JSONResponse:
    return JSONResponse({"success": False, "reason": code, "code": code, "message": message}, status_code=404)


class ContainerScripts:
    """The compiled scripts of every container, from the store and the built runtime."""

    def __init__(self, settings: Settings, projects: ProjectStore, store: ContainerStore) -> None:
        self.settings = settings
        self.projects = projects
        self.store = store
        path = Path(settings.tracker_dir) / RUNTIME
        self.runtime = path.read_text() if path.is_file() else None
        self.cache: dict[tuple, tuple[bytes, bytes, str]] = {}
        self.seen = -1

    def script(self, project_id: str, container: str, version: int | None, draft: bool,
               expired: bool) -> tuple[bytes, bytes, str] | None:
        """``(body, gzipped body, etag)``, or ``None`` when there is no such thing to serve."""
        if self.seen != self.store.changed:  # a record changed: compile again what is asked next
            self.cache.clear()
            self.seen = self.store.changed
        at = (project_id, container, version, draft, expired)
        if at not in self.cache:
            compiled = self._compile(project_id, container, version, draft, expired)
            if compiled is None:
                return None
            if len(self.cache) >= MAX_CACHED:
                self.cache.clear()
            self.cache[at] = (compiled, gzip.compress(compiled, 6, mtime=0),
                              '"' + hashlib.sha256(compiled).hexdigest()[:32] + '"')
        return self.cache[at]

    def _compile(self, project_id: str, container: str, version: int | None, draft: bool,
                 expired: bool) -> bytes | None:
        head = self.store.head(project_id, container)
        project = self.projects.get(project_id)
        if head is None or project is None or not project.enabled or self.runtime is None:
            return None
        if draft:
            raw = head["draft"]
        else:
            record = self.store.version(project_id, container, version or head["published"] or 0)
            if record is None:
                return None
            raw, version = record["definition"], record["version"]
        try:
            definition = parse_definition(raw)
        except DefinitionError as exc:  # written around the admin API: served as nothing, and logged
            log.error("container_unreadable", project=project_id, container=container, problems=exc.problems)
            return None
        return compile_container(self.runtime, definition, container, None if draft else version,
                                 project.public_key or "", preview=draft, expired=expired)


async def serve_container(request: Request) -> Response:
    scripts: ContainerScripts = request.app.state.containers
    project_id, file = request.path_params["project"], request.path_params["file"]
    if not file.endswith(".js"):
        return not_found("not_found", "a container's script is /tm/PROJECT/CONTAINER.js")
    container = file[:-3]
    if scripts.runtime is None:
        return not_found("not_built", f"{RUNTIME} has not been built: run `make install` (npm run build in sdks/js)")
    query = request.query_params
    token, pinned = query.get("preview"), query.get("v", "")
    draft = bool(token) and preview.holds(scripts.settings, token or "", project_id, container)
    version = int(pinned) if pinned.isdigit() and len(pinned) < 10 and not draft else None
    found = scripts.script(project_id, container, version, draft, expired=bool(token) and not draft)
    if found is None:
        return not_found("no_container", f"project {project_id[:80]!r} serves no container {container[:80]!r}"
                         + (f" version {version}" if version else ""))
    body, gzipped, etag = found
    if token:
        cache = "no-store"
    elif version:
        cache = f"public, max-age={YEAR_S}, immutable"
    else:
        cache = f"public, max-age={scripts.settings.tags_max_age_s}"
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Accept-Encoding", "Access-Control-Allow-Origin": "*"}
    if not token and etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gzipped, media_type="text/javascript; charset=utf-8",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
