"""Page URL -> host, path, query and campaign parameters; referrer -> host, medium and source."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

CAMPAIGN_PARAMS = {
    "utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign", "utm_term": "term",
    "utm_content": "content", "gclid": "gclid", "fbclid": "fbclid", "msclkid": "msclkid", "ref": "ref",
}
SEARCH = {"google": "Google", "bing": "Bing", "duckduckgo": "DuckDuckGo", "yahoo": "Yahoo", "baidu": "Baidu",
          "yandex": "Yandex", "ecosia": "Ecosia", "qwant": "Qwant", "startpage": "Startpage", "brave": "Brave"}
SOCIAL = {"facebook.com": "Facebook", "fb.com": "Facebook", "t.co": "Twitter", "twitter.com": "Twitter",
          "x.com": "Twitter", "linkedin.com": "LinkedIn", "lnkd.in": "LinkedIn", "reddit.com": "Reddit",
          "instagram.com": "Instagram", "youtube.com": "YouTube", "tiktok.com": "TikTok",
          "pinterest.com": "Pinterest", "news.ycombinator.com": "Hacker News", "mastodon.social": "Mastodon",
          "bsky.app": "Bluesky", "threads.net": "Threads"}
EMAIL = {"mail.google.com": "Gmail", "outlook.live.com": "Outlook", "outlook.office.com": "Outlook",
         "mail.yahoo.com": "Yahoo Mail", "mail.proton.me": "Proton Mail"}


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


def _registered(host: str, table: dict) -> str | None:
    for domain, name in table.items():
        if host == domain or host.endswith("." + domain):
            return name
    return None


def classify_referrer(referrer_host: str, page_host: str, utm_medium: str = "") -> tuple[str, str]:
    """(medium, source) of a visit: search, social, email, internal, referral or direct."""
    if utm_medium.lower() in ("email", "e-mail", "newsletter"):
        return "email", referrer_host
    if not referrer_host:
        return "direct", ""
    if page_host and (referrer_host == page_host or referrer_host.endswith("." + page_host)):
        return "internal", referrer_host
    if name := _registered(referrer_host, EMAIL):
        return "email", name
    if name := _registered(referrer_host, SOCIAL):
        return "social", name
    labels = referrer_host.split(".")
    for label in labels[:-1]:
        if label in SEARCH:
            return "search", SEARCH[label]
    return "referral", referrer_host
