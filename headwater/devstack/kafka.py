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

from headwater.devstack import DEPLOY_LOCAL
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


def server_properties(settings: Settings) -> str:
    host, _, port = settings.kafka_bootstrap.partition(":")
    controller = f"{host}:{settings.kafka_controller_port}"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{controller}",
        f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}",
        f"advertised.listeners=PLAINTEXT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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


def _java(settings: Settings, main: str, *args: str) -> list[str]:
    return [
        "java", f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}", "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={DEPLOY_LOCAL / 'log4j2.properties'}",
        "-cp", f"{libs_dir(settings)}/*", main, *args,
    ]


def prepare(settings: Settings) -> Path:
    """Fetch jars, write the config and format the storage once; return the config path."""
    ensure_jars(settings)
    home = kafka_dir(settings)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(server_properties(settings))
    if not (home / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        subprocess.run(
            _java(settings, "kafka.tools.StorageTool", "format", "--ignore-formatted",
                  f"--cluster-id={cluster_id}", f"--config={config}"),
            check=True, stdout=subprocess.DEVNULL,
        )
    return config


def run_broker(settings: Settings) -> None:
    """Replace this process with the broker (SIGTERM stops it cleanly)."""
    config = prepare(settings)
    argv = _java(settings, "kafka.Kafka", str(config))
    os.execvp(argv[0], argv)
