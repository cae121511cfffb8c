"""The processors in the running pipeline: enrichment lands in ClickHouse, bad events land in
failed_events (and never in events), replay, per-project flows, privacy, fail-fast configuration."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import time
import uuid

import httpx
import orjson
import pytest

from headwater.projects.store import ProjectStore, ProjectWriter
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/121.0.0.0 Safari/537.36")


@pytest.fixture(scope="module")
def admin(stack):
    return Admin(stack.settings)


def send(stack, key: str, call: str, body: dict, user_agent: str = CHROME) -> str:
    message_id = body.setdefault("messageId", str(uuid.uuid4()))
    reply = post(stack.collector_url, f"/v1/{call}", {"anonymousId": "visitor-p", **body}, key,
                 {"User-Agent": user_agent})
    assert reply.status_code == 200, reply.text
    return message_id


def row(clickhouse, database: str, table: str, message_id: str, columns: str) -> tuple:
    query = f"SELECT {columns} FROM {database}.{table} WHERE message_id = %(m)s"
    return wait_for(lambda: clickhouse.execute(query, {"m": message_id}))[0]


def test_enrichment_lands_in_columns(stack, settings, clickhouse):
    message_id = send(stack, settings.default_write_key, "page", {"name": "Pricing", "context": {
        "ip": "81.2.69.160", "page": {"url": "https://Shop.example/pricing?utm_source=newsletter&utm_campaign=nov",
                                      "referrer": "https://www.bing.com/search?q=shop"}}})
    got = row(clickhouse, "hw_default", "events", message_id,
              "name, browser, os, is_bot, country, city, url_host, url_path, utm_source, utm_campaign, "
              "referrer_host, referrer_medium, referrer_source, ip")
    assert got == ("Pricing", "Chrome", "Windows", False, "GB", "London", "shop.example", "/pricing",
                   "newsletter", "nov", "www.bing.com", "search", "Bing", "127.0.0.0")


def test_invalid_events_go_to_failed_events_only(stack, settings, clickhouse):
    message_id = send(stack, settings.default_write_key, "identify", {"traits": {"email": "not an email"},
                                                                       "context": {"ip": "81.2.69.77"}})
    reason, path, step, payload = row(clickhouse, "hw_default", "failed_events", message_id,
                                      "reason, path, step, payload")
    assert (reason, path, step) == ("schema_violation", "traits.email", "validate")
    stored = orjson.loads(payload)
    assert stored["event"]["traits"]["email"] == "not an email"
    # validation runs before anonymisation, yet the stored dead letter has no raw IP
    assert stored["event"]["context"]["ip"] == "81.2.69.0" and stored["ip"] == "127.0.0.0"
    assert count_rows(clickhouse, "hw_default", "message_id = %(m)s", {"m": message_id}) == 0
    metrics = httpx.get(stack.metrics_url(stack.role_of("validate")), timeout=5).text  # the dead-letter rate
    assert re.search(r'^headwater_dead_letters_total\{step="validate"\} [1-9]', metrics, re.MULTILINE), metrics


def test_custom_schema_then_replay_after_the_fix(stack, admin, clickhouse):
    created = admin.create_project()
    project_id, key, database = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    strict = {"type": "object", "required": ["total"], "properties": {"total": {"type": "number"}}}
    reply = admin.call("POST", f"/v1/projects/{project_id}/schemas",
                       {"event": "Order Completed", "version": "1-0-0", "schema": strict})
    assert reply.status_code == 201, reply.text
    message_id = send(stack, key, "track", {"event": "Order Completed", "properties": {"total": "12.50"}})
    assert row(clickhouse, database, "failed_events", message_id, "path") == ("properties.total",)

    def replay(on_error: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "headwater", "replay", "--project", project_id,
                               "--on-error", on_error], env=stack.env, capture_output=True, text=True, timeout=120)
        assert done.stdout, done.stderr[-3000:]
        return {"code": done.returncode, **json.loads(done.stdout)}

    still_broken = replay("stop")
    assert still_broken["code"] == 1 and still_broken["replayed"] == 0 and still_broken["stopped_at"]

    lenient = {"type": "object", "required": ["total"], "properties": {"total": {"type": ["number", "string"]}}}
    admin.call("POST", f"/v1/projects/{project_id}/schemas",
               {"event": "Order Completed", "version": "1-0-1", "schema": lenient})
    fixed = replay("stop")
    assert fixed["code"] == 0 and fixed["replayed"] == 1
    wait_for(lambda: count_rows(clickhouse, database, "message_id = %(m)s", {"m": message_id}) == 1)
    assert replay("stop")["matched"] == 0  # nothing is replayed twice


def test_schemas_are_listed_shown_and_deleted(stack, admin, clickhouse):
    """Through the API and the CLI; deleting the version that applies makes the one before it apply."""
    created = admin.create_project()
    project_id, key, database = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    event = "Order/Completed"  # a "/" in the name: the rest of the path is the name
    by_sku = {"type": "object", "required": ["sku"]}
    by_total = {"type": "object", "required": ["total"]}
    for version, schema in (("1-0-0", by_sku), ("2-0-0", by_total)):
        assert admin.call("POST", f"/v1/projects/{project_id}/schemas",
                          {"event": event, "version": version, "schema": schema}).status_code == 201
    assert admin.call("GET", f"/v1/projects/{project_id}/schemas").json() == {
        "schemas": [{"event": event, "versions": ["1-0-0", "2-0-0"]}]}
    shown = admin.call("GET", f"/v1/projects/{project_id}/schemas/{event}").json()
    assert shown["applies"] == "2-0-0" and shown["versions"][1]["schema"] == by_total

    refused = send(stack, key, "track", {"event": event, "properties": {"sku": "k1"}})
    assert row(clickhouse, database, "failed_events", refused, "path") == ("properties.total",)
    assert admin.call("DELETE", f"/v1/projects/{project_id}/schemas/{event}?version=2-0-0").status_code == 200
    time.sleep(1)  # the validator sees the change within a second
    accepted = send(stack, key, "track", {"event": event, "properties": {"sku": "k1"}})
    assert row(clickhouse, database, "events", accepted, "event") == (event,)

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "headwater", "project", *argv], env=stack.env,
                              capture_output=True, text=True, timeout=60)

    assert json.loads(cli("schemas", project_id).stdout)["schemas"] == [{"event": event, "versions": ["1-0-0"]}]
    assert json.loads(cli("show-schema", project_id, event).stdout)["versions"][0]["schema"] == by_sku
    assert cli("delete-schema", project_id, event).returncode == 0
    missing = admin.call("GET", f"/v1/projects/{project_id}/schemas/{event}")
    assert missing.status_code == 404 and "no schema for event" in missing.json()["message"]
    assert admin.call("DELETE", f"/v1/projects/{project_id}/schemas/{event}").status_code == 404
    assert cli("show-schema", project_id, event).returncode != 0


def test_flow_changes_at_runtime_and_bad_flows_are_refused(stack, admin, clickhouse):
    created = admin.create_project()
    project_id, key, database = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    refused = admin.call("PATCH", f"/v1/projects/{project_id}/config",
                         {"flow": ["enrich", "validate", "bogus"], "privacy": {"ip": "blur"}})
    assert refused.status_code == 400
    message = refused.json()["message"]
    assert "unknown step 'bogus'" in message and "privacy.ip" in message

    body = {"context": {"ip": "81.2.69.160"}}
    before = send(stack, key, "page", dict(body))
    assert row(clickhouse, database, "events", before, "country, browser") == ("GB", "Chrome")
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config",
                      {"flow": ["validate", "anonymize", "index"]}).status_code == 200
    after = wait_for(lambda: (m := send(stack, key, "page", dict(body))) and row(
        clickhouse, database, "events", m, "country, browser") == ("", "") and m, timeout_s=20)
    assert after


def test_processor_with_a_broken_geoip_database_refuses_to_start(stack, tmp_path):
    broken = tmp_path / "broken.mmdb"
    broken.write_text("not a database")
    env = {**stack.env, "HEADWATER_GEOIP_PATH": str(broken), "HEADWATER_MAX_INVALID_RATIO": "2"}
    done = subprocess.run([sys.executable, "-m", "headwater", "processor", "enrich"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a readable MaxMind database" in done.stderr
    assert "max_invalid_ratio must be in (0, 1]" in done.stderr  # every problem, together


def test_mediator_and_check_refuse_an_invalid_stored_flow(stack, admin):
    """A record written around the admin API (an older version, a hand edit) is caught at start."""
    created = admin.create_project()
    project_id = created["project"]["id"]

    async def write_flow(flow: list[str] | None) -> None:
        store, writer = ProjectStore(stack.settings), ProjectWriter(stack.settings)
        await writer.start()
        await store.start()
        await writer.write(dataclasses.replace(store.get(project_id), flow=flow))
        await store.stop()
        await writer.stop()

    asyncio.run(write_flow(["index", "validate", "bogus"]))
    try:
        for argv in (["check"], ["mediator"]):
            done = subprocess.run([sys.executable, "-m", "headwater", *argv], env=stack.env,
                                  capture_output=True, text=True, timeout=60)
            output = done.stdout + done.stderr
            assert done.returncode == 2, output[-2000:]
            assert f"project {project_id}" in output and "unknown step 'bogus'" in output
    finally:
        asyncio.run(write_flow(None))


def test_one_process_per_step_and_one_for_all_take_over_from_each_other(stack, settings, clickhouse):
    """The local stack runs validate, enrich and anonymize in one process; swapped for one process per
    step and back while the pipeline runs, each topic is read on by its step's own consumer group
    (nothing read again, nothing skipped): events come out enriched and anonymized in both layouts,
    bad ones are dead-lettered by validate, and the combined process serves every step's metrics."""
    from commands.roles import COLOCATED

    def through_the_steps(tag: str) -> None:
        message_id = send(stack, settings.default_write_key, "page", {"context": {
            "ip": "81.2.69.160", "page": {"url": f"https://shop.example/{tag}?utm_source={tag}"}}})
        bad_id = send(stack, settings.default_write_key, "identify", {"traits": {"email": "nope"}})
        got = row(clickhouse, "hw_default", "events", message_id, "browser, country, utm_source, ip")
        assert got == ("Chrome", "GB", tag, "127.0.0.0")
        assert row(clickhouse, "hw_default", "failed_events", bad_id, "step, path") == ("validate", "traits.email")

    assert stack.role_of("enrich") == COLOCATED
    through_the_steps("together")

    def served() -> str | None:
        text = httpx.get(stack.metrics_url(COLOCATED), timeout=5).text
        return text if 'headwater_consumer_lag_total{group="headwater-processor-anonymize"}' in text else None

    metrics = wait_for(served)
    assert re.search(r'^headwater_events_total\{step="validate"\} [1-9]', metrics, re.MULTILINE), metrics
    assert re.search(r'^headwater_dead_letters_total\{step="validate"\} [1-9]', metrics, re.MULTILINE)
    try:
        stack.switch_layout(colocate_stateless_steps=False)
        assert stack.role_of("enrich") == "processor-enrich"
        through_the_steps("apart")
    finally:
        stack.switch_layout(colocate_stateless_steps=True)
    through_the_steps("again")
    assert all(child.alive() for child in stack.services)
