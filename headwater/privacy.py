"""A project's privacy policy and how it applies to an envelope: the one home of both, used by the
anonymize step (processors/anonymize.py) on every event and by the failed-events indexer on every
dead letter, so that what a project's policy removes is removed from everything stored.

Policy (``project.privacy``), every part optional::

    {"ip": "truncate" | "drop" | "keep",     default "truncate": IPv4 to /24, IPv6 to /48
     "hash_fields": ["userId", "traits.email", "properties.account"],  HMAC-SHA256, per-project key
     "drop_properties": ["password", "card_*"],   property and trait names (glob), dropped
     "mask_patterns": ["email", "phone", "<regex>"],  values matching are replaced by "[masked]"
     "cookieless": false}                    true: the visitor id is a keyed hash of a daily salt,
                                             the IP, the user agent and the project (Plausible's method)

Where each part applies:

- ``ip``: the request's address and ``context.ip``;
- ``drop_properties``: names in ``properties``, ``traits`` and ``context.traits`` (where RudderStack's
  SDKs send traits);
- ``mask_patterns``: every string in ``properties``, ``traits`` and ``context.traits``, and the page
  and referrer URLs (``context.page`` and what enrichment derived from them);
- ``hash_fields``: the named paths; a ``traits.`` path also hashes the same trait in ``context.traits``.

Mask patterns run on RE2 (headwater/regex.py): linear time whatever the pattern or the value, and a
pattern RE2 cannot run is refused when the project is configured.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import hmac
import ipaddress

from headwater.envelope import Envelope
from headwater.options import check_options
from headwater.projects.model import Project
from headwater.regex import compile_pattern

IP_POLICIES = ("truncate", "drop", "keep")
NAMED_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "phone": r"\+?\d[\d\s().-]{7,}\d",
    "card": r"\b(?:\d[ -]?){13,19}\b",
}
MASK = "[masked]"
MAX_MASK_PATTERNS = 20
POLICY_FIELDS = ("ip", "hash_fields", "drop_properties", "mask_patterns", "cookieless")
URL_FIELDS = ("url", "path", "query", "referrer", "search")


@dataclasses.dataclass(frozen=True)
class PrivacyPolicy:
    ip: str = "truncate"
    hash_fields: tuple[str, ...] = ()
    drop_properties: tuple[str, ...] = ()
    mask_patterns: tuple[str, ...] = ()
    cookieless: bool = False

    @classmethod
    def of(cls, project: Project | None) -> PrivacyPolicy:
        raw = (project.privacy if project else {}) or {}
        return cls(raw.get("ip", "truncate"), tuple(raw.get("hash_fields", ())),
                   tuple(raw.get("drop_properties", ())), tuple(raw.get("mask_patterns", ())),
                   bool(raw.get("cookieless", False)))

    @property
    def anonymises_ip(self) -> bool:
        return self.ip != "keep"

    @functools.cached_property
    def masks(self) -> Masks:
        return Masks([NAMED_PATTERNS.get(p, p) for p in self.mask_patterns])


class Masks:
    """The policy's mask patterns, compiled by RE2, and one pattern matching any of them. RE2's Python
    binding costs about 1.6 µs a call whatever the text, so an event's strings are first searched at
    once, joined by newlines, with that one pattern (about 3 µs an event), and replaced value by value
    only when something matched. The joined search can only over-match (a pattern that spans a
    newline), never miss, except for anchored patterns (``^``, ``$``), which are therefore always run
    value by value."""

    def __init__(self, patterns: list[str]) -> None:
        self.each = [compile_pattern(p) for p in patterns]
        anchored = any(marker in p for p in patterns for marker in ("^", "$", "\\A", "\\z"))
        try:
            self.any = None if anchored else compile_pattern("|".join(f"(?:{p})" for p in patterns))
        except ValueError:  # too long together, or clashing group names: value by value then
            self.any = None

    def may_match(self, texts: list[str]) -> bool:
        return self.any is None or self.any.search("\n".join(texts)) is not None


def check_privacy(raw: object) -> list[str]:
    """Every problem of a ``privacy`` object, as messages (empty when it is fine)."""
    errors = check_options("privacy", raw, set(POLICY_FIELDS), flags=("cookieless",))
    if not isinstance(raw, dict):
        return errors
    if raw.get("ip", "truncate") not in IP_POLICIES:
        errors.append(f"privacy.ip must be one of {', '.join(IP_POLICIES)}")
    for name in ("hash_fields", "drop_properties", "mask_patterns"):
        value = raw.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            errors.append(f"privacy.{name} must be a list of non-empty strings")
    given = raw.get("mask_patterns")
    patterns: list = given if isinstance(given, list) else []
    if len(patterns) > MAX_MASK_PATTERNS:
        errors.append(f"privacy.mask_patterns: at most {MAX_MASK_PATTERNS} patterns")
    for pattern in patterns[:MAX_MASK_PATTERNS]:
        if not isinstance(pattern, str):
            continue
        try:
            compile_pattern(NAMED_PATTERNS.get(pattern, pattern))
        except ValueError as exc:
            errors.append(f"privacy.mask_patterns: {pattern[:100]!r} is not a pattern RE2 can run in linear time: "
                          f"{exc}")
    return errors


def _octet(text: str) -> bool:
    """A decimal IPv4 octet as ``ipaddress`` accepts it: 0–255, no sign, no leading zero."""
    return text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 255 and \
        (text == "0" or text[0] != "0")


@functools.lru_cache(maxsize=65_536)
def truncate_ip(address: str) -> str | None:
    """IPv4 to its /24, IPv6 to its /48; ``None`` for anything that is not an IP address.

    Dotted IPv4 takes a string-only path (parsing with ``ipaddress``, twice an event, costs anonymize
    about six times as much: docs/performance.md); results are cached, as a visitor's events share an
    address."""
    text = address.strip()
    parts = text.split(".")
    if len(parts) == 4 and all(map(_octet, parts)):
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0"
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)


def apply_ip_policy(policy: PrivacyPolicy, address: str | None) -> str | None:
    if address is None or policy.ip == "keep":
        return address
    return truncate_ip(address) if policy.ip == "truncate" else None


def anonymise_ips(policy: PrivacyPolicy, envelope: Envelope) -> None:
    """Apply the IP policy to every IP the envelope carries: the request's and ``context.ip``."""
    context = envelope.event.get("context")
    if isinstance(context, dict) and "ip" in context:
        context["ip"] = apply_ip_policy(policy, str(context["ip"]))
        if context["ip"] is None:
            del context["ip"]
    envelope.ip = apply_ip_policy(policy, envelope.ip)


def keyed_hash(key: dict, value: object) -> str:
    digest = hmac.new(key["secret"].encode(), str(value).encode(), hashlib.sha256).hexdigest()
    return f"hmac:{key['id']}:{digest}"


def is_keyed_hash(value: object) -> bool:
    """Whether ``value`` is what :func:`keyed_hash` makes: applying the policy twice (to a dead letter
    refused after the anonymize step) must not hash a hash."""
    if not isinstance(value, str) or not value.startswith("hmac:"):
        return False
    digest = value.rpartition(":")[2]
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def _hash_path(event: dict, path: str, key: dict) -> None:
    *parents, leaf = path.split(".")
    node: object = event
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and node.get(leaf) not in (None, "") and not is_keyed_hash(node[leaf]):
        node[leaf] = keyed_hash(key, node[leaf])


def _scrub(value: object, masks: list) -> object:
    if isinstance(value, str):
        for mask in masks:
            value = mask.sub(MASK, value)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, masks) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, masks) for v in value]
    return value


def _strings(value: object, out: list[str]) -> list[str]:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)
    return out


def _drop(properties: object, patterns: tuple[str, ...]) -> object:
    if not isinstance(properties, dict):
        return properties
    return {k: v for k, v in properties.items() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def _trait_holders(event: dict) -> list[tuple[dict, str]]:
    """(container, key) of every object holding properties or traits."""
    holders = [(event, "properties"), (event, "traits")]
    context = event.get("context")
    if isinstance(context, dict):
        holders.append((context, "traits"))
    return holders


def _url_holders(envelope: Envelope) -> list[dict]:
    context = envelope.event.get("context")
    page = context.get("page") if isinstance(context, dict) else None
    enriched = [envelope.enriched.get(name) for name in ("page", "referrer")]
    return [holder for holder in (page, *enriched) if isinstance(holder, dict)]


def _mask(masks: Masks, holders: list[tuple[dict, str]], urls: list[dict]) -> None:
    url_fields = [(holder, field) for holder in urls for field in URL_FIELDS if isinstance(holder.get(field), str)]
    texts = [text for container, name in holders for text in _strings(container.get(name), [])]
    if not masks.may_match(texts + [holder[field] for holder, field in url_fields]):
        return
    for container, name in holders:
        if container.get(name):
            container[name] = _scrub(container[name], masks.each)
    for holder, field in url_fields:
        holder[field] = _scrub(holder[field], masks.each)


def apply_policy(policy: PrivacyPolicy, project: Project | None, envelope: Envelope) -> None:
    """Apply every part of the policy but the cookieless id (which needs the day's salt: the anonymize
    step's) to the envelope, in place."""
    anonymise_ips(policy, envelope)
    event = envelope.event
    holders = _trait_holders(event)
    if policy.drop_properties:
        for container, name in holders:
            if name in container:
                container[name] = _drop(container.get(name), policy.drop_properties)
    if policy.mask_patterns:
        _mask(policy.masks, holders, _url_holders(envelope))
    if policy.hash_fields and project and project.hash_keys:
        for path in policy.hash_fields:
            _hash_path(event, path, project.hash_keys[-1])
            if path.startswith("traits."):
                _hash_path(event, "context." + path, project.hash_keys[-1])
