"""Events for the dashboard's and the Stats API's tests: page and track calls as a browser's SDK sends
them, and a shop with goals and revenue."""

from __future__ import annotations

import uuid

from tests.helpers import Admin, post, wait_for

DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
PHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
         "Version/17.4 Mobile/15E148 Safari/604.1")
GB, AU = "81.2.69.10", "203.0.113.7"


def page(visitor: str, at: str, path: str, ip: str, ua: str, query: str = "") -> dict:
    url = f"https://shop.example{path}{query}"
    return {"type": "page", "anonymousId": visitor, "timestamp": at, "messageId": str(uuid.uuid4()),
            "properties": {"url": url, "path": path},
            "context": {"ip": ip, "userAgent": ua, "page": {"url": url, "path": path}}}


def track(visitor: str, at: str, event: str, ip: str, ua: str, properties: dict) -> dict:
    return {"type": "track", "event": event, "anonymousId": visitor, "timestamp": at,
            "messageId": str(uuid.uuid4()), "properties": properties, "context": {"ip": ip, "userAgent": ua}}


# For goals and revenue, in a shop of their own: s1 comes from a Google ad, sees pricing, signs up for
# pro and buys (EUR); s2 comes from a newsletter and buys (USD); s3 comes directly, sees pricing and
# signs up for free.
SHOP_GOALS = [{"name": "Saw pricing", "page": "/pricing/*"},
              {"name": "Pro signup", "event": "Signed Up", "where": ["properties.plan:eq:pro"]},
              {"name": "Purchase", "event": "Order Completed"}]
SHOP_EVENTS = [
    page("s1", "2026-03-02T10:00:00Z", "/", GB, DESKTOP, "?utm_source=google&utm_medium=cpc"),
    page("s1", "2026-03-02T10:01:00Z", "/pricing/pro", GB, DESKTOP),
    track("s1", "2026-03-02T10:02:00Z", "Signed Up", GB, DESKTOP, {"plan": "pro"}),
    track("s1", "2026-03-02T10:03:00Z", "Order Completed", GB, DESKTOP, {
        "revenue": 49.5, "currency": "EUR", "products": [{"product_id": "p1", "name": "Mug", "price": 12.5, "quantity": 2},
                                                         {"product_id": "p2", "name": "Shirt", "price": 24.5}]}),
    page("s2", "2026-03-02T11:00:00Z", "/", AU, PHONE, "?utm_source=newsletter&utm_medium=email"),
    track("s2", "2026-03-02T11:05:00Z", "Order Completed", AU, PHONE, {
        "revenue": 20, "currency": "usd", "products": [{"product_id": "p2", "name": "Shirt", "price": 20}]}),
    page("s3", "2026-03-03T09:00:00Z", "/", GB, DESKTOP),
    page("s3", "2026-03-03T09:01:00Z", "/pricing/team", GB, DESKTOP),
    track("s3", "2026-03-03T09:02:00Z", "Signed Up", GB, DESKTOP, {"plan": "free"}),
]


def create_shop(stack, clickhouse, admin: Admin, prefix: str) -> dict:
    """A project with :data:`SHOP_GOALS`, its :data:`SHOP_EVENTS` stored and sessionized; the admin
    API's answer to its creation."""
    shop = admin.create_project(prefix=prefix)
    reply = admin.call("PATCH", f"/v1/projects/{shop['project']['id']}/config", {"goals": SHOP_GOALS})
    assert reply.status_code == 200, reply.text
    reply = post(stack.collector_url, "/v1/batch", {"batch": SHOP_EVENTS}, shop["keys"]["public_key"])
    assert reply.status_code == 200, reply.text
    db = shop["project"]["database"]
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {db}.events")[0][0] == len(SHOP_EVENTS), 60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {db}.sessions")[0][0] == 3, 60)
    return shop
