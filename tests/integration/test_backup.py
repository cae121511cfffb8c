"""A backup restored into a fresh stack: the events and sessions are there, the project's keys still
work, and a cookieless visitor still hashes to the same id (the daily salt came back sealed)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devstack.stack import Stack
from headwater.clickhouse import make_client
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


def headwater(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "headwater", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def fresh_settings(settings):
    """Another stack beside the session's: its own ports and data, the same sealing key and backups."""
    return dataclasses.replace(
        settings, kafka_bootstrap="127.0.0.1:29092", kafka_controller_port=29093, clickhouse_port=29000,
        clickhouse_http_port=28123, collector_port=28080, admin_port=28081, dashboard_port=28082,
        local_metrics_port=29400, local_dir=".local/test-restore")


def send_page(collector_url: str, key: str, visitor: str, path: str) -> str:
    """A page view; the project is cookieless, so the visitor id stored is a hash, not ``visitor``."""
    message_id = str(uuid.uuid4())
    body = {"type": "page", "messageId": message_id, "name": path, "context": {"page": {"url": f"https://shop.example{path}"},
                                                                                "userAgent": UA}}
    body["anonymousId"] = visitor
    reply = post(collector_url, "/v1/page", body, key, headers={"User-Agent": UA})
    assert reply.status_code == 200, reply.text
    return message_id


def visitor_of(clickhouse, db: str, message_id: str) -> str:
    rows = clickhouse.execute(f"SELECT anonymous_id FROM {db}.events WHERE message_id = %(m)s", {"m": message_id})
    return rows[0][0] if rows else ""


def test_a_backup_restored_into_a_fresh_stack_has_the_events_the_keys_and_the_salts(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    project, key, db = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    assert admin.call("PATCH", f"/v1/projects/{project}/config", {"privacy": {"cookieless": True}}).status_code == 200
    sent = [send_page(stack.collector_url, key, "browser-1", f"/p/{n}") for n in range(20)]
    wait_for(lambda: count_rows(clickhouse, db) == len(sent), timeout_s=60)
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {db}.sessions")[0][0] > 0, timeout_s=60)
    cookieless = visitor_of(clickhouse, db, sent[0])
    assert cookieless.startswith("cl_")
    sessions = clickhouse.execute(f"SELECT session_id, visitor_id FROM {db}.sessions FINAL WHERE sign = 1 "
                                  "ORDER BY session_id")

    target = Path(settings.backup_dir).resolve() / f"backup-{uuid.uuid4().hex[:8]}"
    made = headwater(stack.env, "backup", "--to", str(target))
    assert made.returncode == 0, made.stderr
    manifest = json.loads((target / "manifest.json").read_text())
    assert project in manifest["projects"] and manifest["databases"][db] == "BACKUP_CREATED"

    fresh = Stack(fresh_settings(settings))
    shutil.rmtree(fresh.settings.local_path, ignore_errors=True)  # nothing of an earlier run
    try:
        fresh.start_servers()
        first = headwater(fresh.env, "restore", "--from", str(target))  # only the default project clashes
        assert first.returncode == 0, first.stderr
        again = headwater(fresh.env, "restore", "--from", str(target))
        assert again.returncode != 0 and "already holds" in again.stderr  # restoring twice is refused
        fresh.start_services()
        restored = make_client(fresh.settings)
        assert count_rows(restored, db) == len(sent)
        assert restored.execute(f"SELECT session_id, visitor_id FROM {db}.sessions FINAL WHERE sign = 1 "
                                "ORDER BY session_id") == sessions
        later = send_page(fresh.collector_url, key, "browser-2", "/after-restore")  # the key works; the salt is the same
        # stored, not taken for a replay of the restored rows' offsets (their lineage is retired)
        wait_for(lambda: visitor_of(restored, db, later), timeout_s=60)
        assert visitor_of(restored, db, later) == cookieless
        restored.disconnect()
    finally:
        fresh.stop()
