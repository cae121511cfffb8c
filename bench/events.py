"""The benchmarks' event: shaped like what analytics.js sends for a `track` call from a web page (about
700 bytes: a full `context` with library, page, user agent, locale and, for some, a campaign), for
5,000 visitors with a realistic mix of browsers. Each carries the messageId ``<run>-<n>``, which the
harness counts in ClickHouse.
"""

from __future__ import annotations

import datetime as dt

VISITORS = 5_000
USER_AGENTS = (  # roughly the share of each in web traffic: Chrome first, then Safari on iOS and macOS
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 "
    "Edg/130.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 "
    "Chrome/122.0.0.0 Mobile Safari/537.36",
)
PRODUCTS = [("kettle-2000", "Kettles", "Stainless Kettle 2000", 49.99),
            ("toaster-4", "Toasters", "Four Slice Toaster", 39.5),
            ("mug-set", "Mugs", "Stoneware Mug Set", 24.0),
            ("teapot-xl", "Teapots", "Cast Iron Teapot XL", 64.0)]
CAMPAIGN = "?utm_source=newsletter&utm_medium=email&utm_campaign=winter"


def event(run: str, n: int, now: dt.datetime | None = None) -> dict:
    visitor = n % VISITORS
    sku, category, name, price = PRODUCTS[n % len(PRODUCTS)]
    path = f"/products/{sku}"
    campaign = n % 5 == 0
    url = f"https://shop.example.com{path}" + (CAMPAIGN if campaign else "")
    sent = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    context = {
        "library": {"name": "analytics.js", "version": "npm:next-1.76.0"},
        "page": {"path": path, "referrer": "https://www.google.com/" if n % 3 == 0 else "", "search": "",
                 "title": f"{name} | Shop", "url": url},
        "userAgent": USER_AGENTS[visitor % len(USER_AGENTS)],
        "locale": "en-GB",
    }
    if campaign:
        context["campaign"] = {"source": "newsletter", "medium": "email", "name": "winter"}
    return {
        "type": "track", "event": "Product Viewed", "messageId": f"{run}-{n}",
        "anonymousId": f"{visitor:08x}-4b1e-4d2a-9c3f-{visitor:012x}",
        "timestamp": sent,
        "properties": {"product_id": sku, "sku": sku, "category": category, "name": name, "price": price,
                       "currency": "GBP", "quantity": 1, "position": n % 12 + 1},
        "context": context, "integrations": {},
    }
