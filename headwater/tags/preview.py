"""Preview tokens: who holds one sees a container's draft, in the browser tab that opened the preview.

A token is signed with ``secret_key`` (itsdangerous: HMAC over a timestamped payload naming the project
and the container) and expires after ``tags_preview_s``. The admin API and the dashboard issue them;
the collector checks them before it serves a draft.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer

from headwater.settings import Settings

SALT = "headwater-tag-manager-preview"


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    if not settings.secret_key:
        raise ValueError("previews need secret_key (HEADWATER_SECRET_KEY) to sign their tokens")
    return URLSafeTimedSerializer(settings.secret_key, salt=SALT)


def issue(settings: Settings, project_id: str, container: str) -> str:
    return _serializer(settings).dumps([project_id, container])


def holds(settings: Settings, token: str, project_id: str, container: str) -> bool:
    """Whether ``token`` is a live preview token of this container."""
    try:
        named = _serializer(settings).loads(token, max_age=settings.tags_preview_s)
    except (BadSignature, ValueError):
        return False
    return named == [project_id, container]
