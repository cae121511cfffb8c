"""The anonymize step: applies the project's privacy policy (headwater/privacy.py) before anything
is stored, and the cookieless visitor id.

After this step the envelope carries no raw IP for projects whose policy is not ``keep``: not in
``envelope.ip``, not in ``context.ip``. Hashes use the project's current HMAC key
(``project.hash_keys[-1]``, rotated through the admin API or ``headwater project rotate-hash-key``);
a hash is ``hmac:<key id>:<hex>`` so analysts can tell which key made it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from headwater.envelope import Envelope
from headwater.privacy import PrivacyPolicy, apply_policy
from headwater.projects.model import Project
from headwater.projects.store import ProjectStore
from headwater.salts import DailySalts
from headwater.settings import Settings
from processors.base import Processor

PARTITION_BUCKETS = 1024


def partition_bucket(material: bytes, project: Project | None) -> str:
    """A stable bucket for a cookieless visitor, keyed by the project's first (never rotated out) key."""
    secret = (project.hash_keys[0]["secret"] if project and project.hash_keys else "").encode()
    digest = hashlib.blake2b(material, key=secret[:64], digest_size=4).digest()
    return f"b{int.from_bytes(digest, 'big') % PARTITION_BUCKETS}"


class Anonymize(Processor):
    name = "anonymize"

    def __init__(self, settings: Settings, store: ProjectStore, salts: DailySalts) -> None:
        super().__init__(settings)
        self.store = store
        self.salts = salts

    @classmethod
    def build(cls, settings: Settings, store: ProjectStore) -> tuple[Anonymize, tuple[DailySalts]]:
        salts = DailySalts(settings)
        return cls(settings, store, salts), (salts,)

    def process(self, envelope: Envelope) -> Envelope | None:
        project = self.store.get(envelope.project_id)
        policy = self.store.derived(envelope.project_id, "privacy", PrivacyPolicy.of)
        if policy.cookieless:
            self._cookieless_id(envelope, project)
        apply_policy(policy, project, envelope)
        return envelope

    def _cookieless_id(self, envelope: Envelope, project: Project | None) -> None:
        """Replace the client's ids with a keyed hash of (the day's salt, IP, user agent, project).

        The id made with the previous day's salt travels along as ``enriched.previous_visitor_id``,
        so that sessionisation can continue a visit across midnight (Plausible's method). So that
        both ids reach the same partition, the event is partitioned by a bucket (one of
        ``PARTITION_BUCKETS``) that does not change at midnight; a bucket is shared by many visitors
        and says next to nothing about one.
        """
        day = datetime.fromtimestamp(envelope.received_at_ms / 1000, tz=UTC).date()
        material = f"{envelope.ip or ''}|{envelope.user_agent or ''}|{envelope.project_id}".encode()

        def visitor(salt: bytes) -> str:
            return "cl_" + hashlib.blake2b(material, key=salt, digest_size=16).hexdigest()

        envelope.event["anonymousId"] = visitor(self.salts.salt_for(day))
        previous = self.salts.salts.get(day - timedelta(days=1))
        if previous:
            envelope.enriched["previous_visitor_id"] = visitor(previous)
        envelope.enriched["partition_key"] = partition_bucket(material, project)
        envelope.event.pop("userId", None)
