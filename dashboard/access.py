"""Who may see what, and how a browser stays logged in. Two kinds of token open the dashboard:

- the **admin token** (``HEADWATER_ADMIN_TOKEN``): every project, and the admin-only pages (failed
  events and their replay);
- a project's **read token** (``headwater project read-token ID``, or ``POST
  /v1/projects/{id}/read-tokens`` on the admin API): that project's pages except the admin-only ones.

A browser logs in once at ``/login``. The cookie it gets holds no token: it is a session signed with a
key derived from the admin token (itsdangerous, HMAC-SHA1 over a timestamped payload), naming the
admin or the read token's hash, valid for ``dashboard_session_hours``. Changing the admin token ends
every session; revoking a read token ends its sessions at their next request. The cookie is HttpOnly,
SameSite=Lax (Secure when ``dashboard_cookie_secure``). Scripts may send ``Authorization: Bearer
<token>`` instead.

A POST that a cookie authorises (log in, log out, replay) must come from this dashboard's own pages:
its ``Origin`` (or, without one, ``Sec-Fetch-Site: same-origin``) must name this host, so another
site's form can neither log a browser in nor act with its session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import time
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request

from headwater.projects.model import READ, key_hash
from headwater.projects.store import ProjectStore

COOKIE = "hw_dashboard"
ADMIN = "admin"


@dataclasses.dataclass(frozen=True)
class Viewer:
    admin: bool
    project_ids: frozenset[str]  # for read tokens; an admin sees every project
    subject: str = ADMIN  # who: "admin", or the read token's hash (what the Stats API limits by)

    def may_see(self, project_id: str) -> bool:
        return self.admin or project_id in self.project_ids


def _read_viewer(store: ProjectStore, hashed: str) -> Viewer | None:
    found = store.by_key_hash.get(hashed)
    if found is None:
        return None
    project, key = found
    if key.kind != READ or not key.active(int(time.time() * 1000)):
        return None
    return Viewer(False, frozenset({project.id}), hashed)


def viewer_for(token: str, admin_token: str, store: ProjectStore) -> Viewer | None:
    """The viewer a token stands for, or ``None`` when it opens nothing."""
    if not token:
        return None
    if admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Viewer(True, frozenset())
    return _read_viewer(store, key_hash(token))


class Sessions:
    """Signed, expiring session cookies. The signing key comes from the admin token (so changing it
    ends every session), else from ``secret_key``, else is random for this process (sessions then end
    with it): never a key anyone could know. Without an admin token no session is an admin's."""

    def __init__(self, admin_token: str, max_age_s: float, secret_key: str = "") -> None:
        material = (admin_token or secret_key).encode() or os.urandom(32)
        secret = hmac.new(material, b"headwater dashboard session", hashlib.sha256).hexdigest()
        self.serializer = URLSafeTimedSerializer(secret, salt="hw-dashboard")
        self.max_age_s = max_age_s
        self.admins = bool(admin_token)

    def cookie_for(self, token: str, admin_token: str) -> str:
        is_admin = bool(admin_token) and hmac.compare_digest(token.encode(), admin_token.encode())
        return self.serializer.dumps(ADMIN if is_admin else key_hash(token))

    def viewer(self, cookie: str, store: ProjectStore) -> Viewer | None:
        try:
            subject = self.serializer.loads(cookie, max_age=self.max_age_s)  # type: ignore[arg-type]  # seconds
        except BadSignature:  # also an expired one
            return None
        if subject == ADMIN:
            return Viewer(True, frozenset()) if self.admins else None
        return _read_viewer(store, subject) if isinstance(subject, str) else None


def viewer_of(request: Request) -> Viewer | None:
    """The viewer of a request: its Bearer token, else its session cookie."""
    state = request.app.state
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return viewer_for(header[7:].strip(), state.settings.admin_token, state.store)
    cookie = request.cookies.get(COOKIE, "")
    return state.sessions.viewer(cookie, state.store) if cookie else None


def from_this_site(request: Request) -> bool:
    """Whether a POST comes from this dashboard's own pages (or carries a Bearer token, which no other
    site's page can send)."""
    if request.headers.get("authorization", "")[:7].lower() == "bearer ":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site") == "same-origin"
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
