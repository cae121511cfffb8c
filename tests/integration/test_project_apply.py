"""What the chart's projects Job runs: `headwater project apply`, against the real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.integration
def test_project_definitions_apply_idempotently_with_given_keys(stack, settings, tmp_path):
    """What the chart's projects Job runs: `headwater project apply` on a ConfigMap and a Secret."""
    import uuid

    import httpx

    project_id = f"applied_{uuid.uuid4().hex[:8]}"
    definition = {"id": project_id, "name": "Shop", "origins": ["https://shop.example"],
                  "flow": ["validate", "anonymize", "index"], "privacy": {"ip": "drop"}, "retention_days": 395}
    keys = {project_id: {"public_key": "pk_given_" + "a" * 20, "server_key": "sk_given_" + "b" * 20}}
    (tmp_path / "projects.json").write_text(json.dumps([definition]))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    command = [sys.executable, "-m", "headwater", "project", "apply", str(tmp_path / "projects.json"),
               "--keys", str(tmp_path / "keys.json")]
    first = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    again = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    assert first == again
    applied = first["projects"][0]
    assert (applied["flow"], applied["privacy"], applied["retention_days"]) == (
        definition["flow"], {"ip": "drop"}, 395)
    assert applied["origins"] == ["https://shop.example"]
    sent = httpx.post(f"{stack.collector_url}/v1/track", auth=(keys[project_id]["server_key"], ""),
                      json={"event": "Applied", "userId": "u1"}, timeout=10)
    assert sent.status_code == 200, sent.text
    (tmp_path / "broken.json").write_text(json.dumps([{"id": project_id, "colour": "blue"}]))
    broken = subprocess.run([sys.executable, "-m", "headwater", "project", "apply", str(tmp_path / "broken.json")],
                            capture_output=True, text=True)
    assert broken.returncode != 0 and "colour" in (broken.stdout + broken.stderr)
