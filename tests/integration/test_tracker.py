"""Headwater's tracking script in a real browser (Debian's Chromium, driven by playwright-core from
sdks/js/test/browser.mjs), against the running collector: exactly the events of the visit land in
ClickHouse, with the page fields, one session and the campaign; Do Not Track, consent and cookieless
mode hold. Also: how the collector serves the script, and its size budget."""

from __future__ import annotations

import gzip
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import Admin, wait_for

pytestmark = pytest.mark.integration
JS = Path(__file__).resolve().parents[2] / "sdks" / "js"
PAGE = """<!doctype html>
<html><head><title>Shop</title>
<script defer src="{collector}/hw.js" data-key="{key}" {attrs}></script>
<script defer src="{collector}/hw-outbound.js"></script>
</head><body>
<a id="pricing" href="/{scenario}/pricing">Pricing</a> <a id="docs" href="/{scenario}/docs">Docs</a>
<a id="outbound" href="https://partner.example/offer">Partner</a>
<script>
  // the site is a single-page app: links change the route with pushState (and nothing leaves the page)
  document.addEventListener("click", (event) => {{
    const link = event.target.closest("a");
    if (!link) return;
    event.preventDefault();
    if (link.id != "outbound") history.pushState({{}}, "", link.getAttribute("href"));
  }});
</script>
</body></html>
"""
SCENARIOS = {"main": "", "dnt": "", "consent": 'data-consent="required"', "cookieless": 'data-id="cookieless"',
             "robust": ""}


class Site:
    """Serves the test site: every path under /<scenario>/ is the same single-page app."""

    def __init__(self) -> None:
        pages = self.pages = {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("/")[1])
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, collector: str, keys: dict[str, str]) -> None:
        self.pages.update({name: PAGE.format(collector=collector, key=keys[name], attrs=attrs, scenario=name).encode()
                           for name, attrs in SCENARIOS.items()})

    def close(self) -> None:
        self.server.shutdown()


def events(clickhouse, db: str) -> list[dict]:
    columns = ("type", "event", "name", "anonymous_id", "user_id", "session_id", "url_path", "url_query", "referrer",
               "utm_source", "utm_medium", "utm_campaign", "properties", "traits", "context", "message_id")
    rows = clickhouse.execute(f"SELECT {', '.join(columns)} FROM {db}.events ORDER BY timestamp, session_seq")
    return [dict(zip(columns, row)) for row in rows]


@pytest.fixture(scope="module")
def visit(stack, settings, clickhouse):
    admin, site = Admin(settings), Site()
    projects = {name: admin.create_project(origins=[site.url], prefix=name) for name in SCENARIOS}
    cookieless_id = projects["cookieless"]["project"]["id"]
    assert admin.call("PATCH", f"/v1/projects/{cookieless_id}/config",
                      {"privacy": {"cookieless": True}}).status_code == 200
    site.publish(stack.collector_url, {name: p["keys"]["public_key"] for name, p in projects.items()})
    try:
        done = subprocess.run(["node", "test/browser.mjs", site.url], cwd=JS, capture_output=True, text=True,
                              timeout=180)
    finally:
        site.close()
    assert done.returncode == 0, done.stderr + done.stdout
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: p["project"]["database"] for name, p in projects.items()}, report


def test_a_visit_arrives_exactly_with_pages_session_and_campaign(visit, clickhouse):
    dbs, report = visit
    got = wait_for(lambda: (e := events(clickhouse, dbs["main"])) and len(e) >= 8 and e, timeout_s=90)
    assert [(e["type"], e["event"], e["url_path"], e["url_query"]) for e in got] == [
        ("page", "page", "/main/", "utm_source=newsletter&utm_medium=email&utm_campaign=autumn"),
        ("page", "page", "/main/pricing", ""),
        ("page", "page", "/main/docs", ""),
        ("page", "page", "/main/pricing", ""),  # back: popstate
        ("page", "page", "/main/pricing", "plan=annual"),  # replaceState
        ("track", "Signed Up", "/main/pricing", "plan=annual"),
        ("track", "Outbound Link Clicked", "/main/pricing", "plan=annual"),
        ("identify", "identify", "/main/pricing", "plan=annual"),
    ]
    assert len({e["message_id"] for e in got}) == 8
    assert len({e["anonymous_id"] for e in got}) == 1 and got[0]["anonymous_id"]
    assert len({e["session_id"] for e in got}) == 1 and got[0]["session_id"]
    assert (got[0]["utm_source"], got[0]["utm_medium"], got[0]["utm_campaign"]) == ("newsletter", "email", "autumn")
    assert got[0]["referrer"] == "" and got[2]["referrer"].endswith("/main/pricing")  # SPA: the previous route
    assert orjson.loads(got[5]["properties"]) == {"plan": "pro"}
    assert orjson.loads(got[6]["properties"]) == {"url": "https://partner.example/offer"}
    assert got[7]["user_id"] == "user-42" and orjson.loads(got[7]["traits"]) == {"email": "ada@example.com"}
    context = orjson.loads(got[0]["context"])
    assert context["screen"]["width"] > 0 and context["locale"] and context["timezone"]
    assert context["library"]["name"] == "headwater.js"
    assert report["storage"]["main"] == ["hw_aid", "hw_uid"]


def test_consent_do_not_track_and_cookieless(visit, clickhouse):
    dbs, report = visit
    consent = wait_for(lambda: (e := events(clickhouse, dbs["consent"])) and len(e) >= 2 and e, timeout_s=90)
    assert [(e["type"], e["event"]) for e in consent] == [("page", "page"), ("track", "After Consent")]
    cookieless = wait_for(lambda: (e := events(clickhouse, dbs["cookieless"])) and len(e) >= 3 and e, timeout_s=90)
    assert [(e["event"], e["url_path"]) for e in cookieless] == [
        ("page", "/cookieless/"), ("page", "/cookieless/pricing"), ("Cookieless Event", "/cookieless/pricing")]
    assert {e["anonymous_id"][:3] for e in cookieless} == {"cl_"}  # replaced by the server's daily hash
    assert report["storage"]["cookieless"] == [[], ""]
    assert events(clickhouse, dbs["dnt"]) == []  # its visit came before the consent one, which has landed


def test_odd_calls_never_throw_into_the_page(visit, clickhouse):
    dbs, report = visit
    assert report["robust"] == ["ok"] * 6 and report["pageErrors"] == []
    pages = wait_for(lambda: (e := events(clickhouse, dbs["robust"])) and len(e) >= 2 and e, timeout_s=90)
    assert [e["url_path"] for e in pages if e["type"] == "page"][:2] == ["/robust/", "/robust/next"]


def test_the_collector_serves_the_script_with_caching(stack):
    plain = httpx.get(stack.collector_url + "/hw.js", headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("text/javascript")
    assert plain.content == (JS / "dist" / "hw.js").read_bytes()
    assert "max-age=" in plain.headers["cache-control"] and plain.headers["etag"]
    zipped = httpx.get(stack.collector_url + "/hw.js", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.content == plain.content
    again = httpx.get(stack.collector_url + "/hw.js", headers={"If-None-Match": plain.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    stale = httpx.get(stack.collector_url + "/hw.js", headers={"If-None-Match": '"something-else"'})
    assert stale.status_code == 200
    assert httpx.get(stack.collector_url + "/hw-outbound.js").status_code == 200


def test_the_core_script_fits_in_1000_gzipped_bytes():
    core = (JS / "dist" / "hw.js").read_bytes()
    assert len(gzip.compress(core, 9)) <= 1000
