"""A single-node Apache Kafka 4.x broker in KRaft mode (combined broker and controller).

The jars come from Maven Central through ``deploy/local/pom.xml``; the data and jars live under the
gitignored local directory, so the broker restarts on the same data.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

from devstack import DEPLOY_LOCAL
from headwater.kafka_access import broker_sasl_properties
from headwater.settings import Settings

POM = DEPLOY_LOCAL / "pom.xml"


def kafka_dir(settings: Settings) -> Path:
    return settings.local_path / "kafka"


def libs_dir(settings: Settings) -> Path:
    return Path(settings.kafka_libs_dir).resolve()


def ensure_jars(settings: Settings) -> Path:
    """Download the broker's jars with Maven unless the pom's set is already there."""
    libs = libs_dir(settings)
    stamp = libs / ".pom-stamp"
    pom_text = POM.read_text()
    if stamp.exists() and stamp.read_text() == pom_text:
        return libs
    libs.mkdir(parents=True, exist_ok=True)
    for jar in libs.glob("*.jar"):
        jar.unlink()
    subprocess.run(
        ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        check=True,
    )
    stamp.write_text(pom_text)
    return libs


def server_properties(settings: Settings, sasl_passwords: dict[str, str] | None = None) -> str:
    """The broker's configuration: PLAINTEXT on loopback for the local stack, or, with
    ``sasl_passwords``, SASL/PLAIN and ACLs as the deployment files run it (headwater/kafka_access.py)."""
    host, _, port = settings.kafka_bootstrap.partition(":")
    controller = f"{host}:{settings.kafka_controller_port}"
    protocol = "SASL_PLAINTEXT" if sasl_passwords else "PLAINTEXT"
    secured = [f"{k}={v}" for k, v in broker_sasl_properties(sasl_passwords).items()] if sasl_passwords else []
    return "\n".join([
        *secured,
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{controller}",
        f"listeners={protocol}://{host}:{port},CONTROLLER://{controller}",
        f"advertised.listeners={protocol}://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        f"inter.broker.listener.name={protocol}",
        f"listener.security.protocol.map=CONTROLLER:{protocol},{protocol}:{protocol}",
        f"log.dirs={kafka_dir(settings) / 'data'}",
        f"num.partitions={settings.topic_partitions}",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "min.insync.replicas=1",
        "",
    ])


def java(settings: Settings, main: str, *args: str) -> list[str]:
    """A command line running ``main`` of the local Kafka jars (the broker, or a tool such as
    ``org.apache.kafka.tools.AclCommand``, which is what ``kafka-acls.sh`` runs)."""
    return [
        "java", f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}", "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEPLOY_LOCAL / 'log4j2.properties'}",
        "-cp", f"{libs_dir(settings)}/*", main, *args,
    ]


def prepare(settings: Settings, sasl_passwords: dict[str, str] | None = None) -> Path:
    """Fetch jars, write the config and format the storage once; return the config path."""
    ensure_jars(settings)
    home = kafka_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(server_properties(settings, sasl_passwords))
    if not (home / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            java(settings, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                  f"--cluster-id={cluster_id}", f"--config={config}"),
            check=True, stdout=subprocess.DEVNULL,
        )
    return config


def run_broker(settings: Settings) -> None:
    """Replace this process with the broker (SIGTERM stops it cleanly)."""
    config = prepare(settings)
    argv = java(settings, "kafka.Kafka", str(config))
    os.execvp(argv[0], argv)
