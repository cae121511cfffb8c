"""Page and referrer URL -> host, path, query; campaign parameters. (A referrer's medium and source:
:mod:`processors.enrichments.referrers`.)"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

CAMPAIGN_PARAMS = {
    "utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign", "utm_term": "term",
    "utm_content": "content", "gclid": "gclid", "fbclid": "fbclid", "msclkid": "msclkid", "ref": "ref",
}


def split_url(url: object) -> dict | None:
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return {"url": url, "host": (parts.hostname or "").lower(), "path": parts.path or "/", "query": parts.query}


def campaign(query: str) -> dict:
    found = {}
    for name, value in parse_qsl(query, keep_blank_values=False):
        key = CAMPAIGN_PARAMS.get(name.lower())
        if key and key not in found:
            found[key] = value[:500]
    return found
