"""The tag manager on the real stack, in Debian's Chromium (sdks/js/test/tm.mjs): a container saved and
published through the admin API, served by the collector, runs on a page. Each trigger kind fires its
tag, with conditions and exceptions; variables resolve; a publish and a rollback change what the page
runs; a preview shows the draft to the previewer only; consent holds a tag back until it is given;
a throwing tag leaves the others and the page working; hostile names and values stay data; and the
events a tag sends land in ClickHouse."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers import Admin, wait_for

pytestmark = pytest.mark.integration
JS = Path(__file__).resolve().parents[2] / "sdks" / "js"
HOSTILE = '</script><script>window.pwned=1</script>"\'];window.pwned=1;//\u2028'
PAGE = """<!doctype html>
<html><head><title>Shop</title>
<script>window.hwDataLayer = [{{plan: "pro", user: {{tier: "gold"}}}}];</script>
<script async src="{collector}/tm/{project}/web.js"></script>
</head><body style="margin:0">
<button id="buy" data-sku="sku-42">Buy <b>now</b></button>
<a id="out" href="https://partner.example/offer">Partner</a>
<a id="pdf" href="/files/guide.pdf">Guide</a>
<a id="admin" href="/admin/">Admin</a>
<form id="signup" action="/signup"><input name="email"><button type="submit" id="send">Send</button></form>
<div style="height:3000px"></div>
<div id="footer">Footer</div>
<script>
  document.addEventListener("click", (event) => event.target.closest("a") && event.preventDefault());
  document.addEventListener("submit", (event) => event.preventDefault());
  window.pageScriptRan = true;
</script>
</body></html>
"""


def pixel(tag: str, **params: str) -> str:
    query = "&".join([f"tag={tag}", *(f"{k}={v}" for k, v in params.items())])
    return f"https://pixel.test/hit?{query}"


def on(*triggers: str, **fields) -> dict:
    return {"kind": "pixel", "triggers": list(triggers), **fields}


DEFINITION = {
    "variables": {
        "plan": {"kind": "data_layer", "key": "plan"},
        "tier": {"kind": "data_layer", "key": "user.tier"},
        "campaign": {"kind": "query", "name": "utm_campaign"},
        "visitor cookie": {"kind": "cookie", "name": "seen"},
        "sku": {"kind": "element", "attribute": "data-sku"},
        "footer text": {"kind": "element", "selector": "#footer"},
        "host": {"kind": "url", "part": "host"},
        "hostile": {"kind": "constant", "value": HOSTILE},
        "section": {"kind": "lookup", "input": "page_path", "table": {"/shop/": "home", "/admin/": "admin"},
                    "default": "other"},
    },
    "triggers": {
        "all pages": {"kind": "pageview"},
        "admin pages": {"kind": "pageview", "conditions": [{"variable": "page_path", "op": "starts_with",
                                                            "value": "/admin"}]},
        "app routes": {"kind": "pageview", "conditions": [{"variable": "page_path", "op": "regex",
                                                           "value": "^/shop/app/[0-9]+$"}]},
        "buy click": {"kind": "click", "selector": "#buy"},
        "outbound": {"kind": "link", "links": "outbound"},
        "download": {"kind": "link", "links": "download", "extensions": ["pdf", "zip"]},
        "signup": {"kind": "form_submit", "selector": "#signup"},
        "signed up": {"kind": "custom_event", "event": "signup_done",
                      "conditions": [{"variable": "plan", "op": "equals", "value": "pro"}]},
        "ticks": {"kind": "timer", "interval_ms": 150, "limit": 2},
        "deep scroll": {"kind": "scroll", "percents": [50, 100]},
        "footer seen": {"kind": "visible", "selector": "#footer", "ratio": 0.5},
        "hostile selector": {"kind": "click", "selector": 'a[title="</script><script>window.pwned=1</script>"]'},
        "broken selector": {"kind": "click", "selector": "###"},
    },
    "tags": {
        "pageview": on("all pages", exceptions=["admin pages"],
                       url=pixel("pageview", plan="{{plan}}", tier="{{tier}}", campaign="{{campaign}}",
                                 cookie="{{visitor cookie}}", host="{{host}}", section="{{section}}",
                                 hostile="{{hostile}}")),
        "app route": on("app routes", url=pixel("app", path="{{page_path}}")),
        "buy": on("buy click", url=pixel("buy", sku="{{sku}}", text="{{element_text}}")),
        "outbound": on("outbound", url=pixel("outbound", to="{{element_url}}")),
        "download": on("download", url=pixel("download", to="{{element_url}}")),
        "signup": on("signup", url=pixel("signup", form="{{element_id}}")),
        "signed up": on("signed up", url=pixel("custom", event="{{event}}")),
        "ticks": on("ticks", fire="once_per_event", url=pixel("timer")),
        "scroll": on("deep scroll", url=pixel("scroll", percent="{{scroll_percent}}")),
        "footer": on("footer seen", url=pixel("visible", text="{{footer text}}")),
        "script": {"kind": "script", "triggers": ["all pages"], "fire": "once_per_page",
                   "url": "https://pixel.test/tag.js?tag=script"},
        "never": on("hostile selector", "broken selector", url=pixel("never")),
    },
}


class Site:
    """The test site: every path is the same page, loading the container of the project it is given."""

    def __init__(self) -> None:
        site = self
        self.page = b""

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Set-Cookie", "seen=yes; Path=/")
                self.end_headers()
                self.wfile.write(site.page)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def site():
    served = Site()
    yield served
    served.server.shutdown()


class Container:
    """A project with a container ``web`` on the site, changed through the admin API."""

    def __init__(self, stack, settings, site: Site) -> None:
        self.admin = Admin(settings)
        created = self.admin.create_project(origins=[site.url], prefix="tags")
        self.project, self.db = created["project"]["id"], created["project"]["database"]
        self.path = f"/v1/projects/{self.project}/containers/web"
        site.page = PAGE.format(collector=stack.collector_url, project=self.project).encode()
        self.site = site

    def call(self, method: str, suffix: str = "", body: dict | None = None, status: int = 200) -> dict:
        reply = self.admin.call(method, self.path + suffix, body)
        assert reply.status_code == status, reply.text
        return reply.json()

    def save(self, definition: dict) -> dict:
        return self.call("PUT", body={"name": "Website", "definition": definition})["container"]

    def publish(self, note: str) -> int:
        return self.call("POST", "/publish", {"note": note})["container"]["published"]


def visit(tmp_path: Path, container: Container, visits: list[dict]) -> dict:
    for v in visits:
        v.setdefault("container", "web")
        v["url"] = container.site.url + v.pop("path")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"visits": visits}))
    done = subprocess.run(["node", "test/tm.mjs", str(plan)], cwd=JS, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout.strip().split("\n")[-1])  # not splitlines: a value holds U+2028


def tags_hit(report: dict) -> list[str]:
    return sorted(hit["tag"] for hit in report["hits"])


def test_each_trigger_fires_its_tag_with_its_variables_and_exceptions_hold(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    container.save(DEFINITION)
    assert container.publish("every trigger") == 1
    report = visit(tmp_path, container, [
        {"name": "shop", "path": "/shop/?utm_campaign=autumn", "wait_ms": 900, "actions": [
            ["click", "#buy b"], ["click", "#out"], ["click", "#pdf"], ["submit", "#send"],
            ["push", {"event": "signup_done"}], ["pushState", "/shop/app/7"], ["scroll"], ["wait", 300]]},
        {"name": "admin", "path": "/admin/", "context": "other", "wait_ms": 100},
    ])
    shop = report["shop"]
    assert shop["errors"] == [] and shop["pwned"] is False and shop["pageScriptRan"] is True
    by_tag: dict[str, list[dict]] = {}
    for hit in shop["hits"]:
        by_tag.setdefault(hit["tag"], []).append(hit)
    # a pageview on load and one for the SPA route; the script tag once a page
    assert len(by_tag["pageview"]) == 2 and shop["scriptTagRan"] == 1
    first = by_tag["pageview"][0]
    assert first == {"tag": "pageview", "plan": "pro", "tier": "gold", "campaign": "autumn", "cookie": "yes",
                     "host": site.url.removeprefix("http://"), "section": "home", "hostile": HOSTILE}
    assert by_tag["app"] == [{"tag": "app", "path": "/shop/app/7"}]
    assert by_tag["buy"] == [{"tag": "buy", "sku": "sku-42", "text": "Buy now"}]
    assert by_tag["outbound"] == [{"tag": "outbound", "to": "https://partner.example/offer"}]
    assert by_tag["download"] == [{"tag": "download", "to": site.url + "/files/guide.pdf"}]
    assert by_tag["signup"] == [{"tag": "signup", "form": "signup"}]
    assert by_tag["custom"] == [{"tag": "custom", "event": "signup_done"}]
    assert len(by_tag["timer"]) == 2  # its limit
    assert sorted(h["percent"] for h in by_tag["scroll"]) == ["100", "50"]
    assert by_tag["visible"] == [{"tag": "visible", "text": "Footer"}]
    # a selector that is not CSS fails its trigger alone, on each click
    assert "never" not in by_tag and any(line.startswith("  trigger broken selector: failed") for line in shop["log"])
    # the exception: no pageview tag on an admin page, whose other tags still run
    admin = tags_hit(report["admin"])
    assert "pageview" not in admin and "script" in admin


def test_a_tag_that_throws_leaves_the_others_and_the_page_working(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    refused = container.admin.call("PUT", container.path, {"definition": {"triggers": {}, "tags": {
        "x": on("nowhere", url=pixel("x", v="{{missing}}"))}}})
    assert refused.status_code == 400
    assert "no variable 'missing'" in refused.text and "no trigger 'nowhere'" in refused.text
    container.save({"triggers": {"all pages": {"kind": "pageview"}}, "tags": {
        "broken html": {"kind": "html", "triggers": ["all pages"], "priority": 10,
                        "code": "<p id='placed'>placed</p><script>throw new Error('boom')</script>"},
        "after": on("all pages", url=pixel("after"))}})
    container.publish("a broken tag")
    report = visit(tmp_path, container, [{"name": "page", "path": "/shop/"}])["page"]
    assert tags_hit(report) == ["after"] and report["pageScriptRan"] is True
    assert any(line.startswith("  broken html: failed") and "boom" in line for line in report["log"])
    assert any(line == "  after: fired" for line in report["log"])


def test_the_collector_serves_a_container_with_caching_and_refuses_what_is_not_there(stack, settings, site):
    container = Container(stack, settings, site)
    url = f"{stack.collector_url}/tm/{container.project}/web.js"
    assert httpx.get(url).status_code == 404  # not saved yet
    container.save({"triggers": {"all": {"kind": "pageview"}}, "tags": {"p": on("all", url=pixel("p"))}})
    reply = httpx.get(url)
    assert reply.status_code == 404 and reply.json()["code"] == "no_container"  # saved, never published
    container.publish("first")
    reply = httpx.get(url)
    assert reply.status_code == 200 and reply.headers["cache-control"] == f"public, max-age={settings.tags_max_age_s}"
    assert reply.headers["content-type"].startswith("text/javascript")
    assert httpx.get(url, headers={"If-None-Match": reply.headers["etag"]}).status_code == 304
    pinned = httpx.get(url + "?v=1")
    assert pinned.status_code == 200 and "immutable" in pinned.headers["cache-control"]
    assert httpx.get(url + "?v=2").status_code == 404
    expired = httpx.get(url + "?preview=not-a-token")
    assert expired.status_code == 200 and expired.headers["cache-control"] == "no-store"
    assert '"expired":true' in expired.text and '"preview":false' in expired.text
    assert httpx.get(f"{stack.collector_url}/tm/{container.project}/nothing.js").status_code == 404
    assert httpx.get(f"{stack.collector_url}/tm/{container.project}/web.css").status_code == 404


def simple(tag: str, **fields) -> dict:
    return {"triggers": {"all pages": {"kind": "pageview"}}, "tags": {tag: on("all pages", url=pixel(tag), **fields)}}


def test_a_publish_and_a_rollback_change_what_the_page_runs(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    container.save(simple("one"))
    assert container.publish("first") == 1
    assert tags_hit(visit(tmp_path, container, [{"name": "v", "path": "/shop/"}])["v"]) == ["one"]
    container.save(simple("two"))
    assert tags_hit(visit(tmp_path, container, [{"name": "v", "path": "/shop/"}])["v"]) == ["one"]  # a draft
    assert container.publish("second") == 2
    assert tags_hit(visit(tmp_path, container, [{"name": "v", "path": "/shop/"}])["v"]) == ["two"]
    rolled = container.call("POST", "/rollback", {"version": 1})["container"]
    assert rolled["published"] == 1 and [v["note"] for v in rolled["versions"]] == ["first", "second"]
    report = visit(tmp_path, container, [{"name": "v", "path": "/shop/"}])["v"]
    assert tags_hit(report) == ["one"] and report["version"] == 1
    assert container.call("GET", "/versions/2")["version"]["definition"] == simple("two")
    container.call("POST", "/rollback", {"version": 9}, status=404)


def test_a_preview_runs_the_draft_for_the_previewer_only(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    container.save(simple("published"))
    container.publish("live")
    container.save(simple("draft"))
    token = container.call("POST", "/preview", status=201)["token"]
    report = visit(tmp_path, container, [
        {"name": "previewer", "path": f"/shop/?hw_tm_preview={token}",
         "actions": [["goto", site.url + "/shop/next"]]},  # the same tab, without the parameter
        {"name": "someone else", "path": "/shop/"},
        {"name": "previewer, done", "path": f"/shop/?hw_tm_preview={token}",
         "actions": [["goto", site.url + "/shop/?hw_tm_preview=0"]]},
        {"name": "forged", "path": "/shop/?hw_tm_preview=" + token[:-4] + "AAAA", "context": "forger"},
    ])
    previewer = report["previewer"]
    assert tags_hit(previewer) == ["draft", "draft"] and previewer["preview"] is True
    assert previewer["panel"].startswith("Headwater preview: web (draft)") and "draft: fired" in previewer["panel"]
    other = report["someone else"]
    assert tags_hit(other) == ["published"] and other["preview"] is False and other["panel"] is None
    done = report["previewer, done"]
    assert tags_hit(done) == ["draft", "published"] and done["preview"] is False
    forged = report["forged"]
    assert tags_hit(forged) == ["published"] and forged["preview"] is False


def test_consent_holds_a_tag_back_until_given_and_do_not_track_keeps_it_back(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    definition = simple("necessary")
    definition["tags"]["marketing"] = on("all pages", consent="marketing", url=pixel("marketing"))
    container.save(definition)
    container.publish("consent")
    give = [["wait", 300], ["push", {"consent": {"marketing": True}}]]
    report = visit(tmp_path, container, [
        {"name": "asked", "path": "/shop/", "actions": give},
        {"name": "came back", "path": "/shop/", "context": "asked"},  # the choice is remembered
        {"name": "do not track", "path": "/shop/", "dnt": True, "actions": give},
    ])
    asked = report["asked"]
    assert [h["tag"] for h in asked["hits"]] == ["necessary", "marketing"]
    assert asked["log"].index("  marketing: waits for consent to marketing") < asked["log"].index("  marketing: fired")
    assert tags_hit(report["came back"]) == ["marketing", "necessary"]
    assert tags_hit(report["do not track"]) == ["necessary"]


def test_events_sent_by_tags_land_in_clickhouse(stack, settings, site, tmp_path, clickhouse):
    container = Container(stack, settings, site)
    container.save({"variables": {"plan": {"kind": "data_layer", "key": "plan"}},
                    "triggers": {"signed up": {"kind": "custom_event", "event": "signup_done"}},
                    "tags": {"signup event": {"kind": "event", "type": "track", "event": "Signup Completed",
                                              "triggers": ["signed up"],
                                              "properties": {"plan": {"var": "plan"}, "source": "tag manager"}}}})
    container.publish("events")
    report = visit(tmp_path, container, [{"name": "v", "path": "/shop/", "wait_ms": 1500,
                                          "actions": [["push", {"event": "signup_done"}]]}])["v"]
    assert report["errors"] == [] and "  signup event: fired" in report["log"]

    def landed() -> list[tuple]:
        return clickhouse.execute(f"SELECT type, event, properties FROM {container.db}.events ORDER BY timestamp")

    rows = wait_for(lambda: len(landed()) >= 2 and landed(), 60)
    tracked = [json.loads(props) for kind, event, props in rows if event == "Signup Completed"]
    assert tracked == [{"plan": "pro", "source": "tag manager"}]
    assert [kind for kind, _, _ in rows].count("page") == 1  # the tracker the container loaded records the page


def headwater(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwater", "tags", *args], capture_output=True, text=True,
                          timeout=120)


def test_a_container_goes_through_a_file_with_the_cli_and_is_published(stack, settings, site, tmp_path):
    container = Container(stack, settings, site)
    container.save(simple("from git"))
    exported = headwater("export", container.project, "web")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {"name": "Website", "definition": simple("from git")}
    path = tmp_path / "web.json"
    path.write_text(exported.stdout)
    imported = headwater("import", container.project, "copy", str(path))
    assert imported.returncode == 0, imported.stderr
    published = headwater("publish", container.project, "copy", "--note", "from the repository")
    assert published.returncode == 0 and json.loads(published.stdout)["container"]["published"] == 1
    listed = json.loads(headwater("list", container.project).stdout)["containers"]
    assert [(c["id"], c["published"]) for c in listed] == [("copy", 1), ("web", None)]
    served = httpx.get(f"{stack.collector_url}/tm/{container.project}/copy.js")
    assert served.status_code == 200 and '"tag=from git"' not in served.text and "from git" in served.text
    path.write_text(json.dumps({"definition": {"tags": {"x": {"kind": "hunch"}}}}))
    refused = headwater("import", container.project, "copy", str(path))
    assert refused.returncode != 0 and "tags.x.kind" in refused.stderr
