"""Referrer -> medium and source, from the maintained referrer lists of :mod:`headwater.referrers`.

Mediums: ``direct`` (no referrer), ``internal`` (the site itself, ``www.`` or not, and its subdomains),
``email`` (``utm_medium=email``, or a webmail host or mail app), ``search``, ``social``, ``ai``, else
``referral``. An Android app referrer (``android-app://com.google.android.gm/``) is looked up by its
package name. In the lists, ``{}`` stands for a country code or top-level domain (``google.{}``);
a host also matches its subdomains; an entry with a path matches that path prefix.

``python -m processors.enrichments.referrers SearchEngines.yml Socials.yml AIAssistants.yml`` rewrites
the upstream file from a newer copy of Matomo's lists.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from headwater.referrers import MEDIUMS, UPSTREAM, lists

COMPOUND_TLDS = {"com", "org", "net", "co", "it", "edu", "ac", "gov", "ne", "or"}
EMAIL_MEDIUMS = {"email", "e-mail", "newsletter"}
MAX_LABELS = 10


def _is_tld(labels: list[str]) -> bool:
    """A country code or top-level domain as the lists' ``{}`` means it: ``de``, ``com``, ``co.uk``."""
    if len(labels) == 1:
        return labels[0].isalpha() and 2 <= len(labels[0]) <= 6
    return len(labels) == 2 and labels[0] in COMPOUND_TLDS and labels[1].isalpha() and len(labels[1]) == 2


class Referrers:
    """The lookup tables built from the lists: exact hosts, ``name.{}`` prefixes, and path entries."""

    def __init__(self, lists: list[dict]) -> None:
        self.exact: dict[str, tuple[str, str]] = {}
        self.tld: dict[str, tuple[str, str]] = {}
        self.paths: dict[str, list[tuple[str, str, str]]] = {}
        for listing in lists:  # later lists win
            for medium in MEDIUMS:
                for name, entries in listing.get(medium, {}).items():
                    for entry in entries:
                        self._add(entry.strip().lower(), (medium, name))

    def _add(self, entry: str, found: tuple[str, str]) -> None:
        entry = entry.removeprefix("android-app://").removeprefix("{}.")
        host, _, path = entry.partition("/")
        if "{}" in host.rpartition(".{}")[0]:
            return  # a wildcard inside the host (images.{}.ask.com): its parent entry covers it
        if path:
            self.paths.setdefault(host, []).append(("/" + path.rstrip("/"), *found))
        elif host.endswith(".{}"):
            self.tld[host[:-3]] = found
        else:
            self.exact[host] = found

    def lookup(self, host: str, path: str = "/") -> tuple[str, str] | None:
        """(medium, name) of a referrer host (and path), or ``None``."""
        # the lists' hosts have at most six labels; a sender's referrer may have thousands, and trying
        # every suffix of those would cost quadratic time
        labels = host.lower().strip(".").split(".")[-MAX_LABELS:]
        for start in range(len(labels) - 1 if len(labels) > 1 else 1):
            candidate = ".".join(labels[start:])
            if found := self._at(candidate, labels[start:], path):
                return found
        return None

    def _at(self, candidate: str, labels: list[str], path: str) -> tuple[str, str] | None:
        for k in (1, 2):
            if len(labels) > k and _is_tld(labels[-k:]):
                prefix = ".".join(labels[:-k])
                for prefix_path, medium, name in self.paths.get(prefix + ".{}", ()):
                    if path.startswith(prefix_path):
                        return medium, name
        for prefix_path, medium, name in self.paths.get(candidate, ()):
            if path.startswith(prefix_path):
                return medium, name
        if candidate in self.exact:
            return self.exact[candidate]
        for k in (1, 2):
            if len(labels) > k and _is_tld(labels[-k:]) and (found := self.tld.get(".".join(labels[:-k]))):
                return found
        return None


@functools.cache
def database() -> Referrers:
    return Referrers(list(lists()))


def same_site(referrer_host: str, page_host: str) -> bool:
    """The site itself: the same host with or without ``www.``, or a subdomain of either."""
    a, b = referrer_host.removeprefix("www."), page_host.removeprefix("www.")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def classify_referrer(referrer_host: str, page_host: str, utm_medium: str = "",
                      referrer_path: str = "/") -> tuple[str, str]:
    """(medium, source) of a visit: direct, internal, email, search, social, ai or referral."""
    if utm_medium.lower() in EMAIL_MEDIUMS:
        return "email", referrer_host
    if not referrer_host:
        return "direct", ""
    if page_host and same_site(referrer_host, page_host):
        return "internal", referrer_host
    found = database().lookup(referrer_host, referrer_path or "/")
    return found if found else ("referral", referrer_host)


def _hosts(yaml_document: dict, nested: bool) -> dict[str, list[str]]:
    if not nested:
        return {name: [str(h) for h in hosts] for name, hosts in yaml_document.items()}
    return {name: [str(h) for config in configs for h in config.get("urls", [])]
            for name, configs in yaml_document.items()}


def main(paths: list[str]) -> None:
    """Rewrite ``headwater/referrer_data/matomo-referrers.json`` from Matomo's SearchEngines.yml, Socials.yml and
    AIAssistants.yml (needs PyYAML)."""
    import yaml

    engines, socials, assistants = (yaml.safe_load(Path(p).read_text()) for p in paths)
    about = json.loads(UPSTREAM.read_text())["about"]
    document = {"about": about, "search": _hosts(engines, True), "social": _hosts(socials, False),
                "ai": _hosts(assistants, False)}
    UPSTREAM.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:4])
