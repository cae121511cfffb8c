"""The tag manager's cost (part of `make bench`): ``python -m bench.tags``, into bench/results/tags.json.

- the runtime's size (``hw-tm.js``, minified, gzipped at level 9), beside the tracking script's
  (``hw.js``), and a realistic container compiled with it (12 variables, 12 triggers, 16 tags);
- what compiling that container costs (the first request after a change: checking the definition,
  compiling and gzipping), best of 200;
- what serving it costs once compiled, µs a request through the collector's route in-process (an
  ASGI call of the Starlette app, gzip accepted), beside serving ``/hw.js`` from the same app: the
  peer figure of the same run.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path

import httpx
import orjson
from starlette.applications import Starlette
from starlette.routing import Route

from bench.run import RESULTS
from collector.containers import ContainerScripts, serve_container
from collector.scripts import load_scripts, serve_script
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects
from headwater.settings import Settings
from headwater.tags.compile import compile_container
from headwater.tags.model import parse_definition
from headwater.tags.store import ContainerStore

DIST = Path(__file__).resolve().parents[1] / "sdks" / "js" / "dist"
REQUESTS = 5000


def container() -> dict:
    """A busy site's container: page, click, link, form, data-layer, scroll and visibility triggers;
    pixels, scripts and events fed by data-layer, URL, cookie and element variables."""
    variables = {f"dl {i}": {"kind": "data_layer", "key": f"ecommerce.item{i}"} for i in range(6)}
    variables |= {"campaign": {"kind": "query", "name": "utm_campaign"}, "consent": {"kind": "cookie", "name": "cc"},
                  "host": {"kind": "url", "part": "host"}, "sku": {"kind": "element", "attribute": "data-sku"},
                  "env": {"kind": "constant", "value": "production"},
                  "section": {"kind": "lookup", "input": "page_path", "table": {"/": "home", "/cart": "cart"},
                              "default": "other"}}
    triggers = {"all pages": {"kind": "pageview"},
                "checkout": {"kind": "pageview", "conditions": [{"variable": "page_path", "op": "regex",
                                                                 "value": "^/checkout(/.*)?$"}]},
                "admin": {"kind": "pageview", "conditions": [{"variable": "page_path", "op": "starts_with",
                                                              "value": "/admin"}]},
                "buy": {"kind": "click", "selector": "button.buy"}, "outbound": {"kind": "link", "links": "outbound"},
                "downloads": {"kind": "link", "links": "download", "extensions": ["pdf", "zip", "dmg"]},
                "newsletter": {"kind": "form_submit", "selector": "form#newsletter"},
                "purchase": {"kind": "custom_event", "event": "purchase"},
                "engaged": {"kind": "timer", "interval_ms": 30_000, "limit": 1},
                "read": {"kind": "scroll", "percents": [25, 50, 75, 100]},
                "footer": {"kind": "visible", "selector": "footer", "ratio": 0.5},
                "add": {"kind": "custom_event", "event": "add_to_cart"}}
    pixel = "https://ads.example/p.gif?e={{event}}&p={{page_path}}&c={{campaign}}&h={{host}}"
    tags = {f"pixel {name}": {"kind": "pixel", "triggers": [name], "exceptions": ["admin"], "consent": "marketing",
                              "url": pixel} for name in triggers if name != "admin"}
    tags |= {"analytics": {"kind": "script", "triggers": ["all pages"], "fire": "once_per_page",
                           "url": "https://cdn.example/analytics.js?site={{host}}"},
             "purchase event": {"kind": "event", "type": "track", "event": "Order Completed", "triggers": ["purchase"],
                                "properties": {f"item{i}": {"var": f"dl {i}"} for i in range(6)}},
             "cart event": {"kind": "event", "type": "track", "event": "Added To Cart", "triggers": ["add"],
                            "properties": {"sku": {"var": "sku"}, "section": {"var": "section"}}},
             "chat": {"kind": "html", "triggers": ["all pages"], "priority": -1,
                      "code": "<script>window.chatReady = true</script>"},
             "identify": {"kind": "event", "type": "identify", "triggers": ["newsletter"],
                          "user_id": {"var": "consent"}, "properties": {"env": {"var": "env"}}}}
    return {"variables": variables, "triggers": triggers, "tags": tags}


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, 9, mtime=0))


def compile_us(runtime: str, raw: dict) -> float:
    best = float("inf")
    for _ in range(200):
        started = time.perf_counter()
        body = compile_container(runtime, parse_definition(raw), "web", 3, "pk_bench")
        gzip.compress(body, 6, mtime=0)
        best = min(best, time.perf_counter() - started)
    return best * 1e6


def app(settings: Settings, raw: dict) -> Starlette:
    store = ContainerStore(settings)
    store.apply("bench/web", orjson.dumps({"name": "Web", "published": 1, "draft": raw, "draft_rev": 1,
                                           "versions": [{"version": 1}], "updated_at_ms": 0}))
    store.apply("bench/web/1", orjson.dumps({"version": 1, "definition": raw}))
    served = Starlette(routes=[Route("/tm/{project}/{file}", serve_container), Route("/hw.js", serve_script)])
    served.state.containers = ContainerScripts(settings, FixedProjects(Project("bench", "Bench", 0)), store)
    served.state.scripts = load_scripts(DIST)
    return served


async def per_request_us(client: httpx.AsyncClient, path: str) -> float:
    headers = {"accept-encoding": "gzip"}
    assert (await client.get(path, headers=headers)).status_code == 200  # compiled, and cached
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(REQUESTS):
            await client.get(path, headers=headers)
        best = min(best, time.perf_counter() - started)
    return best / REQUESTS * 1e6


async def serving(settings: Settings, raw: dict) -> dict[str, float]:
    transport = httpx.ASGITransport(app=app(settings, raw))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        return {"container_request_us": round(await per_request_us(client, "/tm/bench/web.js"), 1),
                "tracker_request_us": round(await per_request_us(client, "/hw.js"), 1)}


def main() -> None:
    settings = Settings(tracker_dir=str(DIST))
    runtime = (DIST / "hw-tm.js").read_text()
    raw = container()
    compiled = compile_container(runtime, parse_definition(raw), "web", 3, "pk_bench")
    result = {
        "runtime_gzip_bytes": gzipped(runtime.encode()), "runtime_bytes": len(runtime.encode()),
        "tracker_gzip_bytes": gzipped((DIST / "hw.js").read_bytes()),
        "container_definition_bytes": len(orjson.dumps(raw)), "compiled_bytes": len(compiled),
        "compiled_gzip_bytes": gzipped(compiled), "compile_us": round(compile_us(runtime, raw), 1),
        **asyncio.run(serving(settings, raw)),
    }
    print(json.dumps(result))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tags.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
