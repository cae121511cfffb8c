"""The referrer lists: which hosts (and names) are search engines, social networks, AI assistants and
mail services. The enrich step classifies each referrer by them (:mod:`processors.enrichments.referrers`),
and the analytics' channel rules (:mod:`analytics.channels`) recognise a ``utm_source`` by their names.

Matomo's lists (matomo-org/searchengine-and-social-list, CC0-1.0: ``referrer_data/matomo-referrers.json``,
host lists only), and Headwater's own additions (``referrer_data/headwater-referrers.json``: webmail and
mail apps, networks the upstream list lacks). Snowplow's referer-parser data would serve too, but it is
GPL-3.0, which an Apache-2.0 project cannot ship.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "referrer_data"
UPSTREAM, OWN = DATA / "matomo-referrers.json", DATA / "headwater-referrers.json"
MEDIUMS = ("search", "social", "ai", "email")


@functools.cache
def lists() -> tuple[dict, ...]:
    """Headwater's list, then Matomo's: each ``{medium: {name: [host entry, …]}}``."""
    return json.loads(OWN.read_text()), json.loads(UPSTREAM.read_text())


@functools.cache
def names(medium: str) -> tuple[str, ...]:
    """The lowercased names of the ``medium``'s services (``google``, ``facebook``), sorted."""
    if medium not in MEDIUMS:
        raise ValueError(f"medium must be one of {', '.join(MEDIUMS)}")
    return tuple(sorted({name.lower() for listing in lists() for name in listing.get(medium, {})}))
