"""Serving Headwater's tracking script: ``GET /hw.js`` (the core) and ``GET /hw-outbound.js`` (an
optional extra), built by ``make install`` from sdks/js into ``tracker_dir``.

Each file is read once, at start, with its gzip form and a strong ETag (a hash of its bytes). Replies
carry ``Cache-Control: public, max-age=…`` so browsers and CDNs keep the script for an hour and then
revalidate: ``If-None-Match`` with the current ETag gets an empty 304.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

SCRIPTS = ("hw.js", "hw-outbound.js")
MAX_AGE_S = 3600


@dataclasses.dataclass(frozen=True)
class Script:
    body: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def read(cls, path: Path) -> Script:
        body = path.read_bytes()
        return cls(body, gzip.compress(body, 9, mtime=0), '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


def load_scripts(directory: Path) -> dict[str, Script]:
    """The built scripts found in ``directory`` (none when the tracker was not built)."""
    return {name: Script.read(directory / name) for name in SCRIPTS if (directory / name).is_file()}


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    return if_none_match.strip() == "*" or etag in [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]


async def serve_script(request: Request) -> Response:
    name = request.url.path.lstrip("/")
    script = request.app.state.scripts.get(name)
    if script is None:
        return JSONResponse({"success": False, "reason": "not_built", "code": "not_built",
                             "message": f"{name} has not been built: run `make install` (npm run build in sdks/js)"},
                            status_code=404)
    headers = {"ETag": script.etag, "Cache-Control": f"public, max-age={MAX_AGE_S}", "Vary": "Accept-Encoding",
               "Access-Control-Allow-Origin": "*"}
    if _matches(request.headers.get("if-none-match"), script.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(script.gzipped, media_type="text/javascript; charset=utf-8",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(script.body, media_type="text/javascript; charset=utf-8", headers=headers)
