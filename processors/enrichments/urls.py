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


# An ad click that carries only its click id came from the ad network's paid search (Google Analytics
# reports auto-tagged Google Ads clicks as google / cpc). Facebook adds fbclid to organic links too.
PAID_CLICK_IDS = {"gclid": "google", "msclkid": "bing"}


def campaign(query: str) -> dict:
    """The campaign parameters of a page's query string; an untagged paid click id gives the source and
    medium (:data:`PAID_CLICK_IDS`)."""
    found = {}
    for name, value in parse_qsl(query, keep_blank_values=False):
        key = CAMPAIGN_PARAMS.get(name.lower())
        if key and key not in found:
            found[key] = value[:500]
    for click_id, source in PAID_CLICK_IDS.items():
        if found.get(click_id) and not found.get("source") and not found.get("medium"):
            found["source"], found["medium"] = source, "cpc"
    return found
