"""The chart on day 2: pods that pass Pod Security "restricted", budgets that let a node drain, a
sessionizer whose transactional ids survive restarts, the knobs a cluster needs, and a real linter
(kube-score) on what it renders."""

from __future__ import annotations

import subprocess

import pytest

from tests.unit.test_deploy import CHART, TRIAL_SECRETS, render_chart, tools  # noqa: F401 (a fixture)

EXTERNAL = ["-f", str(CHART / "values.external.yaml")]
# Checks of kube-score this chart declines, for every object: a CPU limit throttles a latency-bound
# pipeline (requests size it), and a versioned tag needs no pull on every start.
KUBE_SCORE = ["score", "--ignore-container-cpu-limit", "--ignore-test", "container-image-pull-policy",
              "--enable-optional-test", "container-seccomp-profile", "--output-format", "ci", "-"]


def pods(manifests: list[dict]) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in manifests
            if d["kind"] in ("Deployment", "StatefulSet", "Job")]


@pytest.mark.parametrize("values", [[], EXTERNAL], ids=["bundled", "external"])
def test_kube_score_finds_nothing_critical(tools, values):  # noqa: F811
    rendered = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS, *values],
                              capture_output=True, text=True, check=True).stdout
    score = subprocess.run([tools["kube_score"], *KUBE_SCORE], input=rendered, capture_output=True, text=True)
    critical = [line for line in score.stdout.splitlines() if line.startswith("[CRITICAL]")]
    assert score.returncode == 0 and not critical, "\n".join(critical) or score.stderr


@pytest.mark.parametrize("values", [[], EXTERNAL], ids=["bundled", "external"])
def test_every_pod_passes_pod_security_restricted(tools, values):  # noqa: F811
    for name, spec in pods(render_chart(tools, *values)):
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), name
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and not context.get("privileged"), name
            assert context["capabilities"] == {"drop": ["ALL"]}, name


def test_no_budget_blocks_a_drain_and_a_blocking_one_is_refused(tools):  # noqa: F811
    manifests = render_chart(tools)
    replicas = {d["metadata"]["name"]: d["spec"].get("replicas", 1) for d in manifests
                if d["kind"] in ("Deployment", "StatefulSet")}
    hpa_minimum = {d["spec"]["scaleTargetRef"]["name"]: d["spec"]["minReplicas"] for d in manifests
                   if d["kind"] == "HorizontalPodAutoscaler"}
    budgets = [d for d in manifests if d["kind"] == "PodDisruptionBudget"]
    assert budgets
    for budget in budgets:
        name, spec = budget["metadata"]["name"], budget["spec"]
        least = hpa_minimum.get(name, replicas[name])
        assert spec.get("maxUnavailable", 0) >= 1 or spec["minAvailable"] < least, name
    refused = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS,
                              "--set", "components.mediator.pdb.minAvailable=1"], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "components.mediator.pdb.minAvailable (1) must be below its replicas (1)" in refused.stderr


def test_the_sessionizer_keeps_its_transactional_id_across_restarts(tools):  # noqa: F811
    manifests = render_chart(tools)
    sessionize = next(d for d in manifests if d["kind"] == "StatefulSet"
                      and d["metadata"]["labels"]["app.kubernetes.io/component"] == "sessionize")
    headless = next(d for d in manifests if d["kind"] == "Service"
                    and d["metadata"]["name"] == sessionize["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    env = {e["name"]: e for e in sessionize["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HEADWATER_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # name-0, name-1…
    autoscaled = render_chart(tools, "--set", "components.sessionize.hpa.enabled=true")
    hpa = next(d for d in autoscaled if d["kind"] == "HorizontalPodAutoscaler"
               and d["metadata"]["name"].endswith("-sessionize"))
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


def test_consumers_are_live_only_while_their_event_loop_turns(tools):  # noqa: F811
    for name, spec in pods(render_chart(tools)):
        container = spec["containers"][0]
        if container.get("ports") == [{"name": "metrics", "containerPort": 9400}]:
            assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}, name
            assert container["readinessProbe"]["httpGet"]["path"] == "/metrics", name


def test_extra_env_volumes_scheduling_and_pull_secrets_reach_every_headwater_pod(tools):  # noqa: F811
    extras = ["--set", "extraEnv[0].name=HEADWATER_GEOIP_PATH", "--set", "extraEnv[0].value=/geoip/city.mmdb",
              "--set", "extraVolumes[0].name=geoip", "--set", "extraVolumes[0].emptyDir.medium=",
              "--set", "extraVolumeMounts[0].name=geoip", "--set", "extraVolumeMounts[0].mountPath=/geoip",
              "--set", "imagePullSecrets[0].name=ghcr-pull", "--set", "nodeSelector.pool=analytics",
              "--set", "tolerations[0].key=dedicated", "--set", "tolerations[0].operator=Exists",
              "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1",
              "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
                       ".preference.matchExpressions[0].key=pool",
              "--set", "affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0]"
                       ".preference.matchExpressions[0].operator=Exists"]
    for name, spec in pods(render_chart(tools, *extras)):
        assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}] and spec["nodeSelector"] == {"pool": "analytics"}
        assert spec["tolerations"][0]["key"] == "dedicated" and "nodeAffinity" in spec["affinity"], name
        container = spec["containers"][0]
        if "headwater" in container["image"]:
            assert {"name": "HEADWATER_GEOIP_PATH", "value": "/geoip/city.mmdb"} in container["env"], name
            assert any(m["mountPath"] == "/geoip" for m in container["volumeMounts"]), name
            assert any(v["name"] == "geoip" for v in spec["volumes"]), name


def test_the_values_schema_refuses_typos_and_wrong_types(tools):  # noqa: F811
    lint = subprocess.run([tools["helm"], "lint", "--strict", str(CHART), *TRIAL_SECRETS], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout  # the defaults, and NOTES.txt, render under the schema
    typo = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS,
                           "--set", "compnents.collector.replicas=3"], capture_output=True, text=True)
    assert typo.returncode != 0 and "compnents" in typo.stderr
    wrong = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS,
                            "--set", "components.collector.replicas=many"], capture_output=True, text=True)
    assert wrong.returncode != 0 and "replicas" in wrong.stderr


def test_geoip_is_downloaded_before_enrich_starts_and_refreshed_beside_it(tools):  # noqa: F811
    geoip = ["--set", "geoip.enabled=true", "--set", "secrets.geoip.accountId=123456",
             "--set", "secrets.geoip.licenseKey=example-licence"]
    workloads = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["spec"]
                 for d in render_chart(tools, *geoip) if d["kind"] in ("Deployment", "StatefulSet")}
    for name in ("enrich", "dashboard"):
        spec = workloads[name]
        download, = spec["initContainers"]
        refresh = spec["containers"][1]
        assert "geoipupdate" in download["image"] and "GEOIPUPDATE_FREQUENCY" not in str(download["env"])
        assert {"name": "GEOIPUPDATE_FREQUENCY", "value": "72"} in refresh["env"]
        role = spec["containers"][0]
        assert {"name": "HEADWATER_GEOIP_PATH", "value": "/geoip/GeoLite2-City.mmdb"} in role["env"]
        assert {"name": "geoip", "mountPath": "/geoip", "readOnly": True} in role["volumeMounts"]
    assert "initContainers" not in workloads["validate"]
    missing = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS, "--set", "geoip.enabled=true"],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "secrets.geoip.accountId" in missing.stderr


def test_https_ingresses_with_certificates_and_trusted_proxies_for_existing_clusters(tools):  # noqa: F811
    manifests = render_chart(tools, *EXTERNAL)
    ingresses = {d["metadata"]["name"].rsplit("-", 1)[-1]: d for d in manifests if d["kind"] == "Ingress"}
    assert set(ingresses) == {"collector", "dashboard"}
    for name, ingress in ingresses.items():
        assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
        assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
        backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        assert backend["name"].endswith(f"-{name}")
    settings = next(d for d in manifests if d["kind"] == "ConfigMap")["data"]["headwater.toml"]
    assert 'trusted_proxies = "10.244.0.0/16"' in settings and "dashboard_cookie_secure = true" in settings
    assert not [d for d in render_chart(tools) if d["kind"] == "Ingress"]  # opt-in
