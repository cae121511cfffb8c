"""The deployment files stay generated from the one topic definition and the one list of roles."""

from __future__ import annotations

import json

import yaml

from headwater.deployment import COMPOSE_FILE, HELM_TOPICS_FILE, deploy_settings, render, service_name
from headwater.devstack.stack import service_roles
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
