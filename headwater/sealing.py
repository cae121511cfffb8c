"""Sealing the secrets that travel in compacted topics: each project's HMAC keys (in
``headwater.projects``) and the daily salts of cookieless ids (``headwater.salts``).

With ``secret_key`` set (``HEADWATER_SECRET_KEY``, at least 32 characters, the same for every role), a
secret is stored as ``sealed:v1:<base64 of nonce and AES-256-GCM ciphertext>``, so that whoever can
read a topic (a misconfigured ACL, a copied disk, a backup) cannot recompute hashed ids or
cookieless visitor ids. The Compose file and the chart require the key. Without it (the local stack
on a loopback-only broker) secrets are stored as they are. A value written before the key was set
still reads, and is sealed the next time it is written; a sealed value without the key is an error
that names the setting.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "sealed:v1:"
CONTEXT = b"headwater secret"


class SealError(ValueError):
    """A sealed value that cannot be opened: no key, or another key."""


class Sealer:
    def __init__(self, secret_key: str) -> None:
        self.aead = AESGCM(hashlib.sha256(secret_key.encode()).digest()) if secret_key else None

    def seal(self, plaintext: str) -> str:
        if self.aead is None:
            return plaintext
        nonce = os.urandom(12)
        return PREFIX + base64.b64encode(nonce + self.aead.encrypt(nonce, plaintext.encode(), CONTEXT)).decode()

    def open(self, value: str) -> str:
        if not value.startswith(PREFIX):
            return value
        if self.aead is None:
            raise SealError("a secret in Kafka is sealed: set HEADWATER_SECRET_KEY to the key it was sealed with")
        raw = base64.b64decode(value[len(PREFIX):])
        try:
            return self.aead.decrypt(raw[:12], raw[12:], CONTEXT).decode()
        except InvalidTag as exc:
            raise SealError("a secret in Kafka was sealed with another HEADWATER_SECRET_KEY") from exc
