"""Referrers from the maintained lists and bots from the crawler list, end to end: what the enrich
step stores, and what the query library and the dashboard's lists count by default."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from analytics import overview, queries
from analytics.filters import Filters
from analytics.run import records
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def page(visitor: str, referrer: str, user_agent: str = BROWSER) -> dict:
    return {"anonymousId": visitor, "messageId": str(uuid.uuid4()), "name": "Home",
            "context": {"userAgent": user_agent,
                        "page": {"url": "https://www.shop.example/pricing", "referrer": referrer}}}


@pytest.fixture(scope="module")
def loaded(stack, clickhouse):
    created = Admin(stack.settings).create_project(prefix="refs")
    key, db = created["keys"]["server_key"], created["project"]["database"]
    events = [page("from-gmail", "android-app://com.google.android.gm/"),
              page("from-google", "https://www.google.co.uk/"),
              page("from-itself", "https://shop.example/blog"),
              page("crawler", "https://www.google.com/", GOOGLEBOT)]
    for event in events:
        assert post(stack.collector_url, "/v1/page", event, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, db) == len(events), timeout_s=60)
    wait_for(lambda: clickhouse.execute(f"SELECT sum(sign) FROM {db}.sessions")[0][0] == len(events), timeout_s=60)
    return created["project"]["id"], db


def test_referrers_are_classified_from_the_lists(loaded, clickhouse):
    _, db = loaded
    rows = dict(clickhouse.execute(f"SELECT anonymous_id, (referrer_medium, referrer_source) FROM {db}.events"))
    assert rows["from-gmail"] == ("email", "Gmail")
    assert rows["from-google"] == ("search", "Google")
    assert rows["from-itself"] == ("internal", "shop.example")


def test_bots_are_flagged_from_the_crawler_list(loaded, clickhouse):
    _, db = loaded
    flagged = dict(clickhouse.execute(f"SELECT anonymous_id, is_bot FROM {db}.events"))
    assert flagged == {"from-gmail": False, "from-google": False, "from-itself": False, "crawler": True}
    sessions = dict(clickhouse.execute(f"SELECT visitor_id, is_bot FROM {db}.sessions FINAL"))
    assert sessions["crawler"] and not sessions["from-google"]


def test_top_referrers_leave_out_the_site_itself_and_bots(loaded, clickhouse):
    project, _ = loaded
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)
    listed = [r["value"] for r in records(clickhouse, overview.sources(project, "referrers", since, until))]
    assert sorted(listed) == ["Gmail", "Google"]
    top = [r["value"] for r in records(clickhouse, queries.top(project, "referrers", since, until))]
    assert sorted(top) == ["Gmail", "Google"]


def test_every_query_leaves_bots_out_unless_asked(loaded, clickhouse):
    project, _ = loaded
    since, until = datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(hours=1)

    def visitors(filters: Filters) -> int:
        return sum(r["visitors"] for r in records(clickhouse, queries.trends(project, since, until, filters=filters)))

    assert visitors(Filters()) == 3
    assert visitors(Filters(include_bots=True)) == 4
    engaged = records(clickhouse, overview.engagement(project, since, until))
    assert next(r for r in engaged if r["current"])["sessions"] == 3
