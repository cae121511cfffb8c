"""Paid traffic and channels end to end: page views sent through the collector with campaign tags, ad
click ids and referrers; the click ids stored in their columns, and each visit's channel as the rule table
of analytics/channels.py names it, on events and on sessions, as a list, a filter and a breakdown."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from analytics import overview, queries
from analytics.filters import Filters
from analytics.run import records
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
SITE = "https://www.shop.example/landing"
# (query string, referrer, the channel a marketer expects)
VISITS = [
    ("gclid=Cj0KCQ-google-click", "https://www.google.com/", "Paid Search"),
    ("msclkid=ms-click-1", "", "Paid Search"),
    ("utm_source=google&utm_medium=cpc&utm_campaign=winter", "", "Paid Search"),
    ("utm_source=facebook&utm_medium=paid_social", "https://m.facebook.com/", "Paid Social"),
    ("utm_source=news-site&utm_medium=display", "https://news.example/", "Display"),
    ("utm_source=partner&utm_medium=ppc", "", "Paid Other"),
    ("utm_source=newsletter&utm_medium=email&utm_campaign=winter", "", "Email"),
    ("", "android-app://com.google.android.gm/", "Email"),
    ("utm_medium=affiliate&utm_source=deals", "https://deals.example/", "Affiliates"),
    ("", "https://www.bing.com/", "Organic Search"),
    ("fbclid=IwAR-organic-post", "https://l.facebook.com/", "Organic Social"),
    ("utm_source=linkedin&utm_medium=social", "", "Organic Social"),
    ("", "https://chatgpt.com/", "AI Assistants"),
    ("", "https://blog.example/post", "Referral"),
    ("", "", "Direct"),
    ("", "https://shop.example/other", "Direct"),
    ("utm_source=mystery&utm_medium=carrier-pigeon", "", "Unassigned"),
]


def page(visitor: str, query: str, referrer: str) -> dict:
    url = f"{SITE}?{query}" if query else SITE
    return {"anonymousId": visitor, "messageId": str(uuid.uuid4()), "name": "Landing",
            "context": {"userAgent": BROWSER, "page": {"url": url, "referrer": referrer}}}


@pytest.fixture(scope="module")
def loaded(stack, clickhouse):
    created = Admin(stack.settings).create_project(prefix="chan")
    key, db = created["keys"]["server_key"], created["project"]["database"]
    for i, (query, referrer, _) in enumerate(VISITS):
        assert post(stack.collector_url, "/v1/page", page(f"v{i}", query, referrer), key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, db) == len(VISITS), timeout_s=60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {db}.sessions")[0][0] == len(VISITS), timeout_s=60)
    return created["project"]["id"], db


def _window() -> tuple[datetime, datetime]:
    return datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)


def test_click_ids_are_stored_and_an_untagged_paid_click_reads_as_cpc(loaded, clickhouse):
    _, db = loaded
    rows = {r[0]: r[1:] for r in clickhouse.execute(
        f"SELECT anonymous_id, gclid, fbclid, msclkid, utm_source, utm_medium FROM {db}.events")}
    assert rows["v0"] == ("Cj0KCQ-google-click", "", "", "google", "cpc")
    assert rows["v1"] == ("", "", "ms-click-1", "bing", "cpc")
    assert rows["v10"] == ("", "IwAR-organic-post", "", "", "")  # Facebook tags organic links too
    assert rows["v2"] == ("", "", "", "google", "cpc")


def test_each_visit_gets_the_channel_the_rules_name(loaded, clickhouse):
    project, _ = loaded
    since, until = _window()
    expected = Counter(channel for *_, channel in VISITS)
    listed = records(clickhouse, overview.sources(project, "channels", since, until, limit=20))
    assert {r["value"]: r["sessions"] for r in listed} == expected
    assert {r["value"]: r["visitors"] for r in listed} == expected


def test_channel_filters_events_and_sessions_and_breaks_trends_down(loaded, clickhouse):
    project, _ = loaded
    since, until = _window()
    paid = Filters(channel="Paid Search")
    trend = records(clickhouse, queries.trends(project, since, until, filters=paid))
    assert sum(r["visitors"] for r in trend) == 3
    engaged = records(clickhouse, overview.engagement(project, since, until, paid))
    assert next(r for r in engaged if r["current"])["sessions"] == 3
    split = records(clickhouse, queries.trends(project, since, until, breakdown="channel"))
    assert Counter({r["breakdown"]: r["events"] for r in split}) == Counter(c for *_, c in VISITS)
