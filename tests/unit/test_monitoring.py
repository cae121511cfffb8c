"""The operations monitoring: alerts that Prometheus's own tool accepts and that fire on the trouble
they name (tests/unit/alerts_test.yaml), an operations dashboard whose queries parse, and the chart's
Prometheus Operator objects."""

from __future__ import annotations

import json
import subprocess

import yaml

from commands.monitoring import ALERTS, ALERTS_FILE, OPERATIONS_DASHBOARD
from tests.unit.test_deploy import CHART, ROOT, render_chart, tools  # noqa: F401 (a fixture)


def promtool(tools, *args: str, cwd=ROOT) -> subprocess.CompletedProcess:  # noqa: F811
    return subprocess.run([str(ROOT / ".local" / "tools" / "bin" / "promtool"), *args], capture_output=True,
                          text=True, cwd=cwd)


def test_promtool_accepts_the_alerts_and_fires_each_on_its_trouble(tools):  # noqa: F811
    check = promtool(tools, "check", "rules", "--lint=all", "--lint-fatal", str(ALERTS_FILE))
    assert check.returncode == 0, check.stdout + check.stderr
    fired = promtool(tools, "test", "rules", "alerts_test.yaml", cwd=ROOT / "tests" / "unit")
    assert fired.returncode == 0, fired.stdout + fired.stderr
    tested = (ROOT / "tests" / "unit" / "alerts_test.yaml").read_text()
    assert all(f"alertname: {alert.name}" in tested for alert in ALERTS)


def test_every_dashboard_query_parses(tools, tmp_path):  # noqa: F811
    panels = json.loads(OPERATIONS_DASHBOARD.read_text())["panels"]
    rules = [{"record": f"headwater:panel_{panel['id']}", "expr": panel["targets"][0]["expr"]} for panel in panels]
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    check = promtool(tools, "check", "rules", str(tmp_path / "panels.yaml"))
    assert check.returncode == 0 and f"SUCCESS: {len(panels)} rules found" in check.stdout, check.stdout + check.stderr


def test_the_chart_scrapes_every_role_and_ships_the_alerts(tools):  # noqa: F811
    manifests = render_chart(tools, "--set", "metrics.serviceMonitor.enabled=true",
                             "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboards.enabled=true")
    monitor = next(d for d in manifests if d["kind"] == "ServiceMonitor")
    selected = [d for d in manifests if d["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()]
    assert {d["metadata"]["name"].rsplit("-", 1)[-1] for d in selected} == {"collector", "metrics"}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "http"}
    rule = next(d for d in manifests if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS_FILE.read_text())
    dashboards = next(d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards"))
    assert json.loads(dashboards["data"]["headwater-operations.json"])["uid"] == "headwater-operations"
    assert not [d for d in render_chart(tools) if d["kind"] in ("ServiceMonitor", "PrometheusRule")]  # opt-in
