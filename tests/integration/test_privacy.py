"""For projects that anonymise, the raw IP never reaches ClickHouse, the logs, or any topic after the
anonymize step; and a flood of invalid events raises the alarm (and stops a processor only when told to)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from headwater.envelope import Envelope, encode_batch
from headwater.kafka import ensure_topics, make_producer
from headwater.migrations.lock import LOCK_TABLE
from headwater.routing import encode_route
from headwater.topics import dead_letter_topic, raw_topic, step_topic
from tests.helpers import Admin, count_rows, post, wait_for

pytestmark = pytest.mark.integration
RAW_IPS = ["81.2.69.233", "2001:db8:1::77"]


async def topic_bytes(settings, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends, seen = await consumer.end_offsets(list(consumer.assignment())), []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                seen += [bytes(r.value) + b"".join(v for _, v in r.headers) for r in records]
        return b"\n".join(seen)
    finally:
        await consumer.stop()


def test_raw_ips_are_nowhere_after_anonymisation(stack, settings, clickhouse):
    admin = Admin(settings)
    created = admin.create_project()
    key, database = created["keys"]["server_key"], created["project"]["database"]
    ids = []
    for ip in RAW_IPS:
        ids.append(str(uuid.uuid4()))
        body = {"anonymousId": "privacy", "messageId": ids[-1], "name": "Home", "context": {"ip": ip}}
        assert post(stack.collector_url, "/v1/page", body, key).status_code == 200
        # and one that fails validation, so its dead letter is stored too
        bad = {"anonymousId": "privacy", "traits": {"email": "bad"}, "context": {"ip": ip}}
        assert post(stack.collector_url, "/v1/identify", bad, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, database, "message_id IN %(ids)s", {"ids": ids}) == 2)
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {database}.failed_events")[0][0] == 2)

    # GeoIP still saw the raw IPs: it runs before anonymize
    assert sorted(clickhouse.execute(f"SELECT DISTINCT country FROM {database}.events")) == [("DE",), ("GB",)]
    # every table but the migrations' lock, which an indexer seeing the project for the first time may
    # be creating and dropping just now (it holds who took it, never an event)
    tables = [name for (name,) in clickhouse.execute(f"SHOW TABLES FROM {database}") if name != LOCK_TABLE]
    dump = "\n".join(str(clickhouse.execute(f"SELECT * FROM {database}.{table}")) for table in tables)
    logs = "\n".join(p.read_text(errors="replace") for p in Path(settings.local_dir, "logs").glob("*.log"))
    after = [step_topic(settings, "sessionize"), step_topic(settings, "index")]
    topics = asyncio.run(_all_bytes(settings, after))
    before = asyncio.run(topic_bytes(settings, raw_topic(settings)))
    for ip in RAW_IPS:
        assert ip.encode() in before  # the search does find them where they are allowed to be
        assert ip not in dump, f"{ip} found in ClickHouse"
        assert ip not in logs, f"{ip} found in the logs"
        assert ip.encode() not in topics, f"{ip} found in a topic after anonymize"


async def _all_bytes(settings, topics: list[str]) -> bytes:
    return b"".join([await topic_bytes(settings, topic) for topic in topics])


def test_a_flood_of_invalid_events_stops_the_processor_only_when_told_to(stack, settings):
    prefix = f"flood{uuid.uuid4().hex[:6]}"
    flood = dataclasses.replace(settings, topic_prefix=prefix, topic_partitions=1)
    asyncio.run(ensure_topics(flood))

    async def produce_invalid(count: int) -> None:
        producer = make_producer(flood)
        await producer.start()
        route = encode_route(["validate", "index"])
        for n in range(count):
            envelope = Envelope("default", f"f{n}", 0, "r", {"type": "track", "anonymousId": "a"})  # no name
            await producer.send(step_topic(flood, "validate"), encode_batch([envelope]), headers=route)
        await producer.flush()
        await producer.stop()

    asyncio.run(produce_invalid(300))
    env = {**stack.env, "HEADWATER_TOPIC_PREFIX": prefix, "HEADWATER_INVALID_WINDOW": "200",
           "HEADWATER_STOP_ON_INVALID_FLOOD": "true"}
    done = subprocess.run([sys.executable, "-m", "headwater", "processor", "validate"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "were rejected" in done.stderr
    # It stopped before producing the batch that tipped it: nothing was dead-lettered.
    assert asyncio.run(topic_bytes(flood, dead_letter_topic(flood))) == b""


def test_the_whole_policy_applies_to_failed_events_and_context_traits(stack, settings, clickhouse):
    """Hashed, dropped and masked fields must not be stored raw in failed_events, nor context.traits
    (where RudderStack's SDKs send traits) reach the traits column unmasked."""
    admin = Admin(settings)
    created = admin.create_project()
    project_id, key, database = created["project"]["id"], created["keys"]["server_key"], created["project"]["database"]
    policy = {"hash_fields": ["traits.email", "properties.account"], "drop_properties": ["password"],
              "mask_patterns": ["email", "phone"]}
    assert admin.call("PATCH", f"/v1/projects/{project_id}/config", {"privacy": policy}).status_code == 200
    time.sleep(1.5)  # the processors see the new policy
    secrets = {"email": "ada@example.org", "account": "acct-991", "password": "hunter2", "note": "call +44 20 7946 0958",
               "other": "write to grace@example.org", "other_email": "grace@example.org"}
    context = {"traits": {"email": secrets["email"], "password": secrets["password"], "bio": secrets["other"]},
               "page": {"url": f"https://shop.example/?contact={secrets['other'].split()[-1]}"}}
    good = {"anonymousId": "pii", "messageId": str(uuid.uuid4()), "context": context,
            "properties": {"account": secrets["account"], "note": secrets["note"], "password": secrets["password"]}}
    bad_identify = {"anonymousId": "pii", "context": context,  # invalid: traits.email is not an email
                    "traits": {"email": "not-an-email " + secrets["email"], "password": secrets["password"],
                               "phone": secrets["note"]}}
    assert post(stack.collector_url, "/v1/page", good, key).status_code == 200
    assert post(stack.collector_url, "/v1/identify", bad_identify, key).status_code == 200
    wait_for(lambda: count_rows(clickhouse, database, "message_id = %(m)s", {"m": good["messageId"]}) == 1)
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {database}.failed_events")[0][0] == 1)

    dump = "\n".join(str(clickhouse.execute(f"SELECT * FROM {database}.{table}"))
                     for table in ("events", "failed_events", "sessions"))
    for name, value in secrets.items():
        assert value not in dump, f"{name} stored raw"
    payload = clickhouse.execute(f"SELECT payload FROM {database}.failed_events")[0][0]
    assert "hmac:" in payload and "[masked]" in payload
    traits = clickhouse.execute(f"SELECT traits FROM {database}.events WHERE message_id = %(m)s",
                                {"m": good["messageId"]})[0][0]
    assert "hmac:" in traits and "password" not in traits


def test_hmac_keys_and_salts_are_sealed_in_their_topics(stack, settings):
    """Whoever can read headwater.projects must not read each project's HMAC secret in the clear."""
    from headwater.projects.store import ProjectStore
    from headwater.topics import projects_topic, salts_topic

    assert settings.secret_key
    created = Admin(settings).create_project()
    project_id = created["project"]["id"]

    async def secrets_and_bytes():
        store = ProjectStore(settings)
        await store.start()
        await store.wait_for(lambda s: s.get(project_id) is not None)
        secret = store.get(project_id).hash_keys[-1]["secret"]
        await store.stop()
        return secret, await topic_bytes(settings, projects_topic(settings)), await topic_bytes(settings, salts_topic(settings))

    secret, projects, salts = asyncio.run(secrets_and_bytes())
    assert len(secret) >= 32 and secret.encode() not in projects
    assert b"sealed:v1:" in projects and salts and all(
        line.startswith(b"sealed:v1:") for line in salts.split(b"\n") if line)
