"""Who may see what. Two kinds of token open the dashboard:

- the **admin token** (``HEADWATER_ADMIN_TOKEN``): every project, and the admin-only pages (failed
  events and their replay);
- a project's **read token** (``headwater project read-token ID``, or ``POST
  /v1/projects/{id}/read-tokens`` on the admin API): that project's pages except the admin-only ones.

A browser logs in once at ``/login``; the token is kept in an HttpOnly, SameSite=Lax cookie (Secure
when ``dashboard_cookie_secure``), so another site's form cannot post with it. Scripts may send
``Authorization: Bearer <token>`` instead.
"""

from __future__ import annotations

import dataclasses
import hmac
import time

from starlette.requests import Request

from headwater.projects.model import READ
from headwater.projects.store import ProjectStore

COOKIE = "hw_dashboard"


@dataclasses.dataclass(frozen=True)
class Viewer:
    admin: bool
    project_ids: frozenset[str]  # for read tokens; an admin sees every project

    def may_see(self, project_id: str) -> bool:
        return self.admin or project_id in self.project_ids


def token_of(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(COOKIE, "")


def viewer_for(token: str, admin_token: str, store: ProjectStore) -> Viewer | None:
    """The viewer a token stands for, or ``None`` when it opens nothing."""
    if not token:
        return None
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Viewer(True, frozenset())
    found = store.find_key(token)
    if found is None:
        return None
    project, key = found
    if key.kind != READ or not key.active(int(time.time() * 1000)):
        return None
    return Viewer(False, frozenset({project.id}))


def viewer_of(request: Request) -> Viewer | None:
    """The viewer the request's token (cookie or Bearer header) stands for."""
    return viewer_for(token_of(request), request.app.state.settings.admin_token, request.app.state.store)
