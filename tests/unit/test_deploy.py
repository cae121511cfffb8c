"""The deployment files stay generated from the one topic definition and the one list of roles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from commands.deployment import (
    CADDY_ADDRESS,
    COMPOSE_FILE,
    EDGE_SUBNET,
    HELM_TOPICS_FILE,
    IMAGE_REPOSITORY,
    VERSION,
    deploy_settings,
    render,
    service_name,
)
from commands.roles import service_roles
from headwater.topics import topic_specs


def test_committed_deployment_files_match_their_definitions():
    assert render(check=True) == [], "run `headwater deploy render` and commit the result"


def test_compose_has_every_role_and_topic():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    for role, argv in service_roles():
        service = services[service_name(role)]
        assert service["command"] == argv and service["healthcheck"]["test"]
        assert service["image"].startswith("${HEADWATER_IMAGE")  # merged from x-headwater
    topics_script = services["topics"]["command"][0]
    for spec in topic_specs(deploy_settings()):
        assert f"--topic {spec.name} --partitions {spec.partitions} " in topics_script
    assert {"kafka-data", "clickhouse-data"} <= set(compose["volumes"])
    assert ":latest" not in COMPOSE_FILE.read_text()


def test_the_chart_reads_the_same_topics():
    chart_topics = json.loads(HELM_TOPICS_FILE.read_text())["topics"]
    assert [t["name"] for t in chart_topics] == [s.name for s in topic_specs(deploy_settings())]


# --- the offline checks: docker compose config, helm lint and helm template -------------------

ROOT = COMPOSE_FILE.parents[2]
CHART = ROOT / "deploy" / "helm" / "headwater"
TRIAL_SECRETS = ["--set", "secrets.adminToken=example-token", "--set", "secrets.clickhousePassword=example",
                 "--set", "secrets.secretKey=example-secret-key-of-32-characters-or-more",
                 *(part for user in ("admin", "collector", "pipeline", "control")
                   for part in ("--set", f"secrets.kafkaPasswords.{user}=example-{user}"))]


@pytest.fixture(scope="module")
def tools():
    """helm and docker compose, built from the Go module proxy into .local/tools the first time."""
    subprocess.run(["bash", str(ROOT / "deploy" / "tools" / "install-tools.sh")], check=True, timeout=3600)
    tools = ROOT / ".local" / "tools"
    return {"helm": str(tools / "bin" / "helm"), "caddy": str(tools / "bin" / "caddy"),
            "kube_score": str(tools / "bin" / "kube-score"), "docker_config": str(tools / "docker")}


def compose(tools, *args: str) -> subprocess.CompletedProcess:
    docker = shutil.which("docker")
    command = [docker, "compose"] if docker else [str(Path(tools["docker_config"]) / "cli-plugins" / "docker-compose")]
    return subprocess.run([*command, "-f", str(COMPOSE_FILE), *args], capture_output=True, text=True,
                          env={**os.environ, "DOCKER_CONFIG": tools["docker_config"]})


def test_docker_compose_config_accepts_the_compose_file(tools):
    good = compose(tools, "--env-file", str(COMPOSE_FILE.parent / ".env.example"), "config", "--quiet")
    assert good.returncode == 0, good.stderr
    services = compose(tools, "--env-file", str(COMPOSE_FILE.parent / ".env.example"), "config", "--services")
    assert {service_name(role) for role, _ in service_roles()} | {"kafka", "clickhouse", "topics", "migrate", "caddy"} \
        == set(services.stdout.split())
    with_geoip = compose(tools, "--env-file", str(COMPOSE_FILE.parent / ".env.example"), "--profile", "geoip",
                         "config", "--services")
    assert set(with_geoip.stdout.split()) - set(services.stdout.split()) == {"geoipupdate"}
    missing = compose(tools, "config", "--quiet")  # no .env: the password is required, and said so
    assert missing.returncode != 0 and "missing a value: set" in missing.stderr


def render_chart(tools, *values: str) -> list[dict]:
    done = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS, *values],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_helm_lint_and_the_rendered_manifests(tools):
    lint = subprocess.run([tools["helm"], "lint", str(CHART), *TRIAL_SECRETS], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifests = render_chart(tools)
    components = set(yaml.safe_load((CHART / "values.yaml").read_text())["components"])
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in manifests
                   if d["kind"] in ("Deployment", "StatefulSet")
                   and d["metadata"]["labels"]["app.kubernetes.io/component"] in components}
    assert set(deployments) == components
    assert {" ".join(c["args"]) for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"]} \
        == {" ".join(argv) for _, argv in service_roles()}  # every role runs, each in its own Deployment
    containers = [c for d in manifests if d["kind"] in ("Deployment", "StatefulSet")
                  for c in d["spec"]["template"]["spec"]["containers"]]
    for container in containers:
        assert container.get("readinessProbe") and container.get("livenessProbe"), container["name"]
        assert container["resources"]["requests"] and container["resources"]["limits"], container["name"]
        assert ":" in container["image"] and not container["image"].endswith(":latest"), container["image"]
    collector = deployments["collector"]["spec"]["template"]["spec"]["containers"][0]
    assert collector["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert collector["livenessProbe"]["httpGet"]["path"] == "/healthz"
    kinds = {d["kind"] for d in manifests}
    assert {"Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} <= kinds
    with_ingress = render_chart(tools, "--set", "collector.ingress.enabled=true")
    assert any(d["kind"] == "Ingress" for d in with_ingress)


def test_kafka_and_clickhouse_connection_settings_for_external_clusters():
    import dataclasses

    from headwater.clickhouse import make_client
    from headwater.errors import FatalError
    from headwater.kafka import compression_type, fetch_limits, kafka_connection
    from headwater.settings import Settings

    base = Settings()
    assert kafka_connection(base) == {"bootstrap_servers": base.kafka_bootstrap, "security_protocol": "PLAINTEXT"}
    sasl = kafka_connection(dataclasses.replace(base, kafka_security_protocol="sasl_ssl",
                                                kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="hw",
                                                kafka_sasl_password="secret"))
    assert sasl["security_protocol"] == "SASL_SSL" and sasl["ssl_context"] is not None
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"]) == ("SCRAM-SHA-512", "hw")
    with pytest.raises(FatalError, match="kafka_security_protocol"):
        kafka_connection(dataclasses.replace(base, kafka_security_protocol="TLS"))
    with pytest.raises(FatalError, match="kafka_sasl_mechanism"):
        kafka_connection(dataclasses.replace(base, kafka_security_protocol="SASL_PLAINTEXT"))
    assert compression_type(base) == "zstd" and compression_type(dataclasses.replace(base, kafka_compression="none")) is None
    with pytest.raises(FatalError, match="kafka_compression must be one of"):
        compression_type(dataclasses.replace(base, kafka_compression="brotli"))
    with pytest.raises(FatalError, match="collector_compression must be one of"):
        compression_type(dataclasses.replace(base, collector_compression="brotli"), "collector_compression")
    plain_raw = dataclasses.replace(base, collector_compression="none")
    assert compression_type(plain_raw, "collector_compression") is None
    raw_fetch = fetch_limits(plain_raw, "collector_compression")["max_partition_fetch_bytes"]
    assert (raw_fetch, fetch_limits(plain_raw)["max_partition_fetch_bytes"]) == (1024 * 1024, 1024 * 1024 // 10)
    client = make_client(dataclasses.replace(base, clickhouse_secure=True, clickhouse_port=9440))
    assert client.connection.secure_socket and list(client.connection.hosts) == [(base.clickhouse_host, 9440)]


def test_the_external_values_render_for_existing_clusters(tools):
    external = str(CHART / "values.external.yaml")
    lint = subprocess.run([tools["helm"], "lint", str(CHART), "-f", external], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifests = render_chart(tools, "-f", external)
    stateful = [d["metadata"]["labels"]["app.kubernetes.io/component"] for d in manifests if d["kind"] == "StatefulSet"]
    assert stateful == ["sessionize"]  # no bundled Kafka or ClickHouse
    deployments = [d for d in manifests if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(deployments) == len(yaml.safe_load((CHART / "values.yaml").read_text())["components"])
    for deployment in deployments:
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["HEADWATER_KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["HEADWATER_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "kafka-password"
        assert env["HEADWATER_CLICKHOUSE_SECURE"]["value"] == "true" and env["HEADWATER_CLICKHOUSE_PORT"]["value"] == "9440"
    topics = next(d for d in manifests if d["kind"] == "Job" and "topics" in d["metadata"]["name"])
    script = topics["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "--replication-factor 3" in script and "--partitions 24" in script and "sasl.jaas.config" in script
    settings_map = next(d for d in manifests if d["kind"] == "ConfigMap")
    assert [p["id"] for p in json.loads(settings_map["data"]["projects.json"])] == ["shop"]
    projects = next(d for d in manifests if d["kind"] == "Job" and "projects" in d["metadata"]["name"])
    assert projects["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["project", "apply"]


def test_the_chart_runs_each_import_on_its_schedule(tools, tmp_path):
    plan = {"project": "shop", "tables": [{"name": "users", "key": ["id"], "cursor": "updated_at", "source": {
        "kind": "postgresql", "host": "db.internal", "table": "users", "user": "reader",
        "password_env": "APP_DB_PASSWORD"}}]}
    values = tmp_path / "imports.yaml"
    values.write_text(yaml.safe_dump({"imports": [{"name": "app-db", "schedule": "15 * * * *",
                                                   "passwordsSecret": "app-db-import", "plan": plan}]}))
    lint = subprocess.run([tools["helm"], "lint", str(CHART), *TRIAL_SECRETS, "-f", str(values)], capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    manifests = render_chart(tools, "-f", str(values))
    cron = next(d for d in manifests if d["kind"] == "CronJob")
    assert (cron["spec"]["schedule"], cron["spec"]["concurrencyPolicy"]) == ("15 * * * *", "Forbid")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["import", "/etc/headwater/import/plan.json"]
    assert container["envFrom"] == [{"secretRef": {"name": "app-db-import"}}]
    plan_map = next(d for d in manifests if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("import-app-db"))
    from importer.plan import parse_plan

    assert parse_plan(plan_map["data"]["plan.json"].encode()).tables[0].table == "imported_users"
    assert not [d for d in render_chart(tools) if d["kind"] == "CronJob"]  # none without imports


def test_compose_runs_kafka_with_sasl_acls_and_a_user_per_kind_of_role():
    """The deployment files ran Kafka unauthenticated: anyone who reached the broker read the HMAC
    secrets and could rewrite a project."""
    from commands.deployment import acl_command
    from headwater.kafka_access import acls, user_of

    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    broker = services["kafka"]["environment"]
    assert broker["KAFKA_LISTENERS"] == "SASL_PLAINTEXT://:9092,CONTROLLER://:9093"
    assert "PLAINTEXT:PLAINTEXT" not in broker["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert broker["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert broker["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    for role, _ in service_roles():
        env = services[service_name(role)]["environment"]
        assert env["HEADWATER_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert env["HEADWATER_KAFKA_SASL_USERNAME"] == user_of(role)
        assert f"KAFKA_{user_of(role).upper()}_PASSWORD" in env["HEADWATER_KAFKA_SASL_PASSWORD"]
        assert "HEADWATER_SECRET_KEY" in env["HEADWATER_SECRET_KEY"]
    assert services["collector"]["environment"]["HEADWATER_KAFKA_SASL_USERNAME"] == "collector"
    script = services["topics"]["command"][0]
    assert all(acl_command(acl, "kafka:9092") in script for acl in acls(deploy_settings()))


def test_the_chart_secures_kafka_and_the_network(tools):
    manifests = render_chart(tools)
    policies = [d for d in manifests if d["kind"] == "NetworkPolicy"]
    assert any(not p["spec"].get("ingress") for p in policies)  # the default deny
    kafka_policy = next(p for p in policies if p["metadata"]["name"].endswith("-kafka"))
    assert kafka_policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "trial"}
    broker = next(d for d in manifests if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-kafka"))
    env = {e["name"]: e for e in broker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KAFKA_LISTENERS"]["value"].startswith("SASL_PLAINTEXT://")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"]["value"] == "false"
    assert "$(KAFKA_COLLECTOR_PASSWORD)" in env["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG"]["value"]
    users = {}
    for deployment in (d for d in manifests if d["kind"] == "Deployment"):
        container_env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        users[deployment["metadata"]["labels"]["app.kubernetes.io/component"]] = \
            container_env["HEADWATER_KAFKA_SASL_USERNAME"]["value"]
        assert container_env["HEADWATER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "secret-key"
    control = ("admin", "dashboard", "lag-exporter")  # read and manage metadata; never the pipeline's data path
    assert users["collector"] == "collector" and {users[name] for name in control} == {"control"}
    assert {users[name] for name in users if name not in ("collector", *control)} == {"pipeline"}
    topics = next(d for d in manifests if d["kind"] == "Job" and "topics" in d["metadata"]["name"])
    assert "kafka-acls.sh" in topics["spec"]["template"]["spec"]["containers"][0]["args"][0]
    without_key = subprocess.run([tools["helm"], "template", "trial", str(CHART), *TRIAL_SECRETS[:4]],
                                 capture_output=True, text=True)
    assert without_key.returncode != 0 and "secrets.secretKey" in without_key.stderr


def test_the_image_copies_every_package_the_project_installs():
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    packages = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (root / "deploy" / "docker" / "Dockerfile").read_text(), re.M))
    assert {p.rstrip("*") for p in packages} <= copied
    assert "devstack" not in {p.rstrip("*") for p in packages}  # the local stack stays out of the package


def test_compose_builds_the_versioned_image_from_a_clone(tools):
    resolved = yaml.safe_load(compose(tools, "--env-file", str(COMPOSE_FILE.parent / ".env.example"), "config").stdout)
    services = resolved["services"]
    builders = {name: s["build"] for name, s in services.items() if "build" in s}
    assert set(builders) == {"migrate"}  # one build; every Headwater service runs its image
    assert Path(builders["migrate"]["context"]) == ROOT
    assert (ROOT / builders["migrate"]["dockerfile"]).is_file()
    images = {services[service_name(role)]["image"] for role, _ in service_roles()} | {services["migrate"]["image"]}
    assert images == {f"{IMAGE_REPOSITORY}:{VERSION}"}
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION


def test_only_the_tls_proxy_is_believed_about_client_addresses():
    import ipaddress

    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert ipaddress.ip_address(CADDY_ADDRESS) in ipaddress.ip_network(EDGE_SUBNET)
    assert services["caddy"]["networks"]["edge"]["ipv4_address"] == CADDY_ADDRESS
    for name in ("collector", "dashboard"):
        assert services[name]["environment"]["HEADWATER_TRUSTED_PROXIES"] == f"{CADDY_ADDRESS}/32"
        assert "edge" in services[name]["networks"]
    for name, service in services.items():  # behind the proxy, nothing else listens beyond the host
        if name != "caddy":
            assert all(str(port).startswith("127.0.0.1:") for port in service.get("ports", [])), name
    assert services["dashboard"]["environment"]["HEADWATER_DASHBOARD_COOKIE_SECURE"] == "true"


def test_the_caddyfile_serves_the_collector_and_the_dashboard_over_https(tools):
    done = subprocess.run([tools["caddy"], "adapt", "--config", str(COMPOSE_FILE.parent / "Caddyfile"),
                           "--adapter", "caddyfile"], capture_output=True, text=True,
                          env={**os.environ, "HEADWATER_DOMAIN": "analytics.example.com"})
    assert done.returncode == 0, done.stderr
    server, = json.loads(done.stdout)["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]  # certificates by the proxy itself; port 80 redirects to 443
    upstreams = {route["match"][0]["host"][0]: route["handle"][0]["routes"][0]["handle"][0]["upstreams"][0]["dial"]
                 for route in server["routes"]}
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert upstreams == {"analytics.example.com": "collector:8080", "dashboard.analytics.example.com": "dashboard:8082"}
    assert {"collector", "dashboard"} <= set(services)


def test_the_image_lock_pins_every_dependency_with_hashes():
    import re
    import tomllib

    lock = (ROOT / "deploy" / "docker" / "requirements.lock").read_text()
    pinned = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^ ;\\]+)", lock, flags=re.M | re.I))
    pinned = {name.lower().replace("_", "-"): version for name, version in pinned.items()}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, version = re.match(r"([A-Za-z0-9._-]+)(?:\[[^]]*\])?==(\S+)", requirement).groups()
        assert pinned.get(name.lower().replace("_", "-")) == version, f"{name}: run `make lock`"
    assert len(pinned) > 30 and lock.count("--hash=sha256:") >= len(pinned)


def test_compose_shares_the_refreshed_geoip_database_with_enrich_and_the_dashboard():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert services["geoipupdate"]["profiles"] == ["geoip"]
    assert services["geoipupdate"]["volumes"] == ["geoip:/usr/share/GeoIP"]
    assert int(services["geoipupdate"]["environment"]["GEOIPUPDATE_FREQUENCY"]) > 0
    readers = {name for name, service in services.items() if "geoip:/usr/share/GeoIP:ro" in service.get("volumes", [])}
    assert readers == {"enrich", "dashboard"}


def test_compose_shares_the_backup_directory_between_clickhouse_and_the_command():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert "backups:/backups" in services["clickhouse"]["volumes"] and "backups:/backups" in services["admin"]["volumes"]
    assert services["admin"]["environment"]["HEADWATER_BACKUP_DIR"] == "/backups"
    mounted = next(v for v in services["clickhouse"]["volumes"] if v.endswith("config.d/backups.xml:ro"))
    config = (COMPOSE_FILE.parent / mounted.split(":")[0]).read_text()
    assert "<allowed_path>/backups/</allowed_path>" in config
