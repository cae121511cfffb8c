"""The dashboard against a hostile browser or visitor: security headers on every answer, a session
cookie that holds no token and cannot be forged, no cross-site logins or replays, and never a 5xx for
any query string on any page (a property over every page, run against the real stack)."""

from __future__ import annotations

import string

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard.access import COOKIE
from dashboard.rendering import NAV
from tests.fuzz_cases import counted
from tests.helpers import Admin, dashboard_session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(stack):
    return Admin(stack.settings).create_project(prefix="dash_hostile")["project"]["id"]


@pytest.fixture(scope="module")
def admin_cookies(stack):
    return dashboard_session(stack.dashboard_url, stack.settings.admin_token)


def test_every_answer_carries_the_security_headers(stack, project, admin_cookies):
    for path in ("/login", f"/p/{project}/overview", "/static/dashboard.js", "/nope"):
        headers = httpx.get(stack.dashboard_url + path, cookies=admin_cookies).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"


def test_the_session_cookie_holds_no_token_and_cannot_be_forged(stack, project, admin_cookies):
    token = stack.settings.admin_token
    assert token not in admin_cookies[COOKIE]
    url = f"{stack.dashboard_url}/p/{project}/overview"
    assert httpx.get(url, cookies=admin_cookies).status_code == 200
    for forged in (token, admin_cookies[COOKIE][:-2] + "xx", "admin"):
        reply = httpx.get(url, cookies={COOKIE: forged})
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login")


def test_a_revoked_read_tokens_sessions_end(stack, project):
    admin = Admin(stack.settings)
    token = admin.call("POST", f"/v1/projects/{project}/read-tokens").json()["read_token"]
    cookies = dashboard_session(stack.dashboard_url, token)
    url = f"{stack.dashboard_url}/p/{project}/overview"
    assert httpx.get(url, cookies=cookies).status_code == 200
    assert admin.call("DELETE", f"/v1/projects/{project}/read-tokens").status_code == 200

    def ended() -> bool:
        return httpx.get(url, cookies=cookies).status_code == 303

    from tests.helpers import wait_for
    wait_for(ended, timeout_s=10)


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {}, {"Sec-Fetch-Site": "cross-site"}])
def test_a_login_posted_from_another_site_is_refused(stack, headers):
    reply = httpx.post(stack.dashboard_url + "/login", data={"token": stack.settings.admin_token},
                       headers=headers, follow_redirects=False)
    assert reply.status_code == 403 and COOKIE not in reply.cookies


def test_a_login_from_the_dashboards_own_form_works_without_origin_when_same_origin(stack):
    reply = httpx.post(stack.dashboard_url + "/login", data={"token": stack.settings.admin_token},
                       headers={"Sec-Fetch-Site": "same-origin"}, follow_redirects=False)
    assert reply.status_code == 303 and COOKIE in reply.cookies


PAGES = [view for view, _ in NAV] + ["live.json", "sessions/s_x", "sql/overview/trend", "people/someone",
                                     "people/" + "x" * 1200, "sql/people/people", "sql/sessions/new"]
PARAMS = ("range", "from", "to", "tz", "interval", "step", "window", "period", "periods", "start", "end",
          "country", "page", "browser", "utm_campaign", "bots", "count", "cohort", "by", "q")
CHOSEN = {"range": ["custom", "today", "24h", "7d", "90d"], "from": ["9999-12-30", "0001-01-01", "2026-11-01"],
          "to": ["9999-12-31", "2026-11-30", "1970-01-01"], "window": ["9" * 5000, "0", "86400", "-1"],
          "start": ["999999999999999", "0", "1795348740000"], "end": ["99999999999999", "1795348740001"],
          "periods": ["9" * 4400, "52", "0"], "tz": ["Mars/Olympus", "Europe/Berlin", "../etc/passwd"],
          "interval": ["hour", "minute"], "bots": ["include", "yes"], "count": ["ids", "persons", "households"],
          "cohort": ["whales", "x" * 200], "by": ["cohorts", "browser"], "q": ["x" * 300, "%", "'"]}
values = st.one_of(st.text(string.printable, max_size=40), st.text(max_size=20), st.sampled_from(
    [v for choices in CHOSEN.values() for v in choices]))


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(page=st.sampled_from(PAGES), params=st.dictionaries(st.sampled_from(PARAMS), values, max_size=6))
def test_no_query_string_on_any_page_is_a_5xx(stack, project, admin_cookies, page, params):
    counted("dashboard pages with hostile query strings")
    reply = httpx.get(f"{stack.dashboard_url}/p/{project}/{page}", params=params, cookies=admin_cookies,
                      timeout=30)
    assert reply.status_code < 500, (page, params, reply.text[-500:])


@pytest.mark.parametrize("query", ["range=custom&from=9999-12-30&to=9999-12-31",
                                   "range=custom&from=0001-01-01&to=2026-01-01", "window=" + "9" * 5000,
                                   "periods=" + "9" * 5000])
def test_the_reported_500s_are_400s_with_a_reason(stack, project, admin_cookies, query):
    view = "funnels" if "window" in query else "retention" if "periods" in query else "overview"
    reply = httpx.get(f"{stack.dashboard_url}/p/{project}/{view}?{query}", cookies=admin_cookies)
    assert reply.status_code == 400 and "must be" in reply.text


def test_a_session_with_an_impossible_start_is_a_400(stack, project, admin_cookies):
    reply = httpx.get(f"{stack.dashboard_url}/p/{project}/sessions/x?start=999999999999999&end=999999999999999",
                      cookies=admin_cookies)
    assert reply.status_code == 400
