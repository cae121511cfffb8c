"""A project's record, as stored (one JSON value per project in the projects topic)."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from fnmatch import fnmatchcase

PUBLIC = "public"  # the browser write key: not secret, checked against the allowed origins
SERVER = "server"  # secret keys for server-side senders; stored only as a hash
READ = "read"  # secret tokens that open the project's dashboard, and never write; stored only as a hash
WRITE_KINDS = (PUBLIC, SERVER)
PREFIXES = {PUBLIC: "pk_", SERVER: "sk_", READ: "rk_"}
ANY_ORIGIN = "*"
_ORIGIN = re.compile(r"(\*|https?://(\*\.)?[a-z0-9.-]+(:\d{1,5})?)")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(24)


def check_origin_pattern(origin: str) -> str:
    """Normalise an allowed-origin entry (``https://shop.example``, ``https://*.example``, ``*``)."""
    normalised = origin.strip().rstrip("/").lower()
    if not _ORIGIN.fullmatch(normalised):
        raise ValueError(f"{origin!r} is not an origin like https://example.com, https://*.example.com or *")
    return normalised


@dataclasses.dataclass
class Key:
    kind: str
    hash: str
    prefix: str
    created_at_ms: int
    expires_at_ms: int | None = None  # set when rotated out: it keeps working until then
    public_value: str | None = None  # the browser key itself, which is not a secret

    def active(self, now_ms: int) -> bool:
        return self.expires_at_ms is None or now_ms < self.expires_at_ms


@dataclasses.dataclass
class Project:
    id: str
    name: str
    created_at_ms: int
    enabled: bool = True
    origins: list[str] = dataclasses.field(default_factory=list)
    keys: list[Key] = dataclasses.field(default_factory=list)
    # How its events are processed; each part is checked by the processor it configures.
    flow: list | None = None  # None: the default flow; step names or {"step", "when"} (headwater/flow.py)
    privacy: dict = dataclasses.field(default_factory=dict)  # processors/anonymize.py PrivacyPolicy
    enrich: dict = dataclasses.field(default_factory=dict)  # processors/enrich.py EnrichOptions
    validation: dict = dataclasses.field(default_factory=dict)  # processors/validate.py ValidationOptions
    sessions: dict = dataclasses.field(default_factory=dict)  # processors/sessions.py SessionOptions
    retention_days: int | None = None  # events and sessions older than this are dropped; None keeps all
    event_schemas: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # event -> versions
    hash_keys: list[dict] = dataclasses.field(default_factory=list)  # HMAC keys; the last one is current
    destinations: list[dict] = dataclasses.field(default_factory=list)  # headwater/destinations.py
    identity: dict = dataclasses.field(default_factory=dict)  # identity/graph.py IdentityOptions
    cohorts: list[dict] = dataclasses.field(default_factory=list)  # analytics/cohorts.py
    goals: list[dict] = dataclasses.field(default_factory=list)  # analytics/goals.py
    alerts: dict = dataclasses.field(default_factory=dict)  # headwater/alerts.py

    @property
    def public_key(self) -> str | None:
        current = [k for k in self.keys if k.kind == PUBLIC and k.expires_at_ms is None]
        return current[-1].public_value if current else None

    def origin_allowed(self, origin: str) -> bool:
        origin = origin.lower()
        return any(pattern == ANY_ORIGIN or fnmatchcase(origin, pattern) for pattern in self.origins)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Project:
        keys = [Key(**k) for k in raw.get("keys", [])]
        return cls(**{**raw, "keys": keys})
