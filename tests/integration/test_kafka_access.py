"""The deployment's Kafka security on a real broker: SASL/PLAIN, the StandardAuthorizer, and the ACLs
of headwater/kafka_access.py added by the same kafka-acls.sh commands as the Compose file's topic job
(Kafka's AclCommand, from the local jars). Without them anyone who reaches the broker reads the
project registry, HMAC secrets included, and rewrites a project."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from devstack import kafka as local_kafka
from headwater.kafka import ensure_topics, kafka_connection, wait_for_broker
from headwater.kafka_access import BROKER_ADMIN, USERS, acl_arguments, acls, client_properties
from headwater.topics import projects_topic, raw_topic, step_topic

pytestmark = pytest.mark.integration
PASSWORDS = {BROKER_ADMIN: "admin-pw-for-test", **{user: f"{user}-pw-for-test" for user in USERS}}


@pytest.fixture(scope="module")
def secured(settings, tmp_path_factory):
    """A broker of its own (ports 3919x), secured as the deployment files secure it, its topics created
    and its ACLs added."""
    home = tmp_path_factory.mktemp("secured-kafka")
    local = dataclasses.replace(settings, kafka_bootstrap="127.0.0.1:39192", kafka_controller_port=39193,
                                local_dir=str(home), topic_partitions=1, kafka_heap="384m")
    config = local_kafka.prepare(local, PASSWORDS)
    broker = subprocess.Popen(local_kafka.java(local, "kafka.Kafka", str(config)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        admin = as_user(local, BROKER_ADMIN)
        asyncio.run(wait_for_broker(admin, timeout_s=90))
        asyncio.run(ensure_topics(admin))
        properties = home / "admin.properties"
        properties.write_text(client_properties(BROKER_ADMIN, PASSWORDS[BROKER_ADMIN]))
        for acl in acls(local):
            subprocess.run(local_kafka.java(local, "org.apache.kafka.tools.AclCommand", "--bootstrap-server",
                                            local.kafka_bootstrap, "--command-config", str(properties),
                                            *acl_arguments(acl)), check=True, capture_output=True, timeout=120)
        yield local
    finally:
        broker.terminate()
        broker.wait(60)


def as_user(settings, user: str, password: str | None = None):
    return dataclasses.replace(settings, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                               kafka_sasl_username=user, kafka_sasl_password=password or PASSWORDS[user])


async def produce(settings, topic: str) -> None:
    producer = AIOKafkaProducer(**kafka_connection(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{}", key=b"k")
    finally:
        await producer.stop()


async def read_one(settings, topic: str) -> None:
    consumer = AIOKafkaConsumer(topic, **kafka_connection(settings), auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()


def allowed(call) -> bool:
    try:
        asyncio.run(call)
        return True
    except TopicAuthorizationFailedError:
        return False


def test_the_collector_writes_raw_events_and_reads_the_registry_only(secured):
    collector = as_user(secured, "collector")
    assert allowed(produce(collector, raw_topic(secured)))
    assert allowed(read_one(collector, projects_topic(secured)))
    assert not allowed(produce(collector, projects_topic(secured)))
    assert not allowed(produce(collector, step_topic(secured, "index")))


def test_only_control_rewrites_a_project(secured):
    assert not allowed(produce(as_user(secured, "pipeline"), projects_topic(secured)))
    assert allowed(produce(as_user(secured, "pipeline"), step_topic(secured, "index")))
    assert allowed(produce(as_user(secured, "control"), projects_topic(secured)))


@pytest.mark.parametrize("who", ["anonymous", "wrong password"])
def test_nobody_without_credentials_gets_in(secured, who):
    settings = secured if who == "anonymous" else as_user(secured, "collector", "not-the-password")
    with pytest.raises((KafkaError, OSError, asyncio.TimeoutError)):
        asyncio.run(asyncio.wait_for(read_one(settings, projects_topic(secured)), 30))
