"""Destinations on the real stack: the forwarder delivers what each destination's condition selects to a
real webhook receiver, another Headwater (Segment's wire format), a Kafka topic and Parquet files on an
S3-compatible server; retries through an outage and a kill -9; dead-letters what is refused; never
holds back ClickHouse; never sends what the privacy policy removes."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import subprocess
import sys
import threading
import time

import httpx
import orjson
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.helpers import Admin, count_rows, dashboard_session, post, wait_for
from tests.receivers import Receiver, accept

pytestmark = pytest.mark.integration
FLOW = ["validate", "enrich", "anonymize", "sessionize", "index"]


def events(n: int, tag: str, **properties) -> list[dict]:
    return [{"type": "track", "event": "Order Completed" if i % 2 == 0 else "Page Seen",
             "anonymousId": f"{tag}-visitor-{i % 7}", "messageId": f"{tag}-{i}",
             "context": {"ip": "203.0.113.77"}, "properties": {"i": i, **properties}} for i in range(n)]


def orders(batch: list[dict]) -> set[str]:
    return {e["messageId"] for e in batch if e["event"] == "Order Completed"}


def send(stack, key: str, batch: list[dict]) -> None:
    for start in range(0, len(batch), 100):
        reply = post(stack.collector_url, "/v1/batch", {"batch": batch[start:start + 100]}, key)
        assert reply.status_code == 200, reply.text


def metric(stack, name: str, destination: str = "") -> float:
    text = httpx.get(stack.metrics_url("forwarder"), timeout=5).text
    pattern = rf'^{name}{{[^}}]*destination="{destination}"[^}}]*}} (\S+)$' if destination else rf"^{name}(?:{{[^}}]*}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


def webhook(name: str, url: str, **extra) -> dict:
    return {"name": name, "type": "webhook", "settings": {"url": url}, "batch": {"max_events": 50, "max_ms": 200},
            **extra}


def new_project(settings, destinations: list[dict], privacy: dict | None = None) -> tuple[str, str, str]:
    admin = Admin(settings)
    created = admin.create_project(prefix="dest")
    project_id = created["project"]["id"]
    config = {"flow": FLOW, "destinations": destinations, "privacy": privacy or {}}
    reply = admin.call("PATCH", f"/v1/projects/{project_id}/config", config)
    assert reply.status_code == 200, reply.text
    return project_id, created["keys"]["server_key"], created["project"]["database"]


def test_selected_events_reach_the_webhook_signed_transformed_and_without_what_the_policy_removes(stack, settings, receiver):
    secret = "a-webhook-secret-of-some-length"
    privacy = {"ip": "drop", "drop_properties": ["card_note"], "hash_fields": ["userId"]}
    project, key, _ = new_project(settings, [webhook("crm", receiver.url, when={"event": "Order *"},
                                                     do=[{"set": "properties.via", "value": "hw"}],
                                                     settings={"url": receiver.url, "secret": secret})], privacy)
    shown = Admin(settings).call("GET", f"/v1/projects/{project}").json()["project"]["destinations"][0]
    assert shown["settings"]["secret"] == "(set)"
    sent = [{**e, "userId": f"user-{i}"} for i, e in enumerate(events(60, project, card_note="4111 visa"))]
    send(stack, key, sent)
    wait_for(lambda: receiver.delivered_ids(project) >= orders(sent), timeout_s=60)
    assert receiver.delivered_ids(project) == orders(sent)
    for _, headers, body in receiver.requests:
        stamp, digest = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", headers["x-headwater-signature"]).groups()
        expected = hmac.new(secret.encode(), f"{stamp}.".encode() + headers["raw-body"].encode(), hashlib.sha256)
        assert digest == expected.hexdigest() and headers["idempotency-key"] == body["batch_id"]
    for event in receiver.delivered(project):
        assert event["properties"]["via"] == "hw" and "card_note" not in event["properties"]
        assert event["userId"].startswith("hmac:") and "ip" not in event.get("context", {})
    # the whole note: "4111" alone turns up in a hex HMAC of a user id now and then
    assert "203.0.113.77" not in str(receiver.requests) and "4111 visa" not in str(receiver.requests)


def test_refused_events_are_dead_lettered_one_by_one_and_a_503_is_retried(stack, settings, clickhouse, receiver):
    failures = {"left": 3}

    def answer(body, headers):
        if any(e["properties"].get("poison") for e in body["events"]):
            return 400, {}
        if failures["left"]:
            failures["left"] -= 1
            return 503, {"Retry-After": "1"}
        return 200, {}

    receiver.answer = answer
    project, key, db = new_project(settings, [webhook("picky", receiver.url)])
    sent = events(40, project) + events(3, f"{project}-poison", poison=True)
    send(stack, key, sent)
    good = {e["messageId"] for e in sent if not e["properties"].get("poison")}
    wait_for(lambda: receiver.delivered_ids(project) >= good, timeout_s=60)
    dead = f"SELECT message_id, reason, step FROM {db}.failed_events ORDER BY message_id"
    wait_for(lambda: len(clickhouse.execute(dead)) == 3, timeout_s=60)
    assert clickhouse.execute(dead) == [(f"{project}-poison-{i}", "destination_refused", "forward:picky") for i in range(3)]
    assert receiver.delivered_ids(project) == good
    assert 503 in [status for status, _, _ in receiver.requests]
    assert metric(stack, "headwater_forwarder_retried_total", "picky") > 0
    assert metric(stack, "headwater_forwarder_failed_total", "picky") == 3

    def replay(*options: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "headwater", "replay", "--project", project, *options],
                              env=stack.env, capture_output=True, text=True, timeout=120)
        assert done.stdout, done.stderr[-3000:]
        return {"code": done.returncode, **json.loads(done.stdout)}

    assert replay("--on-error", "skip")["matched"] == 0  # the pipeline's replay leaves them to the destination's
    assert replay("--destination", "picky")["stopped_at"].endswith("HTTP 400: {}")  # still refused: stops there
    receiver.answer = accept  # the receiver is fixed
    assert replay("--destination", "picky") == {"code": 0, "matched": 3, "delivered": 3, "skipped": 0,
                                                "dead_lettered": 0, "not_selected": 0, "stopped_at": None}
    assert receiver.delivered_ids(project) == good | {f"{project}-poison-{i}" for i in range(3)}
    assert replay("--destination", "picky")["matched"] == 0  # a replay goes on from where the last one ended


def test_a_slow_or_dead_destination_holds_back_neither_clickhouse_nor_another_destination(stack, settings, clickhouse,
                                                                                         receiver):
    down, slow = Receiver(), Receiver()
    slow.answer = lambda body, headers: (time.sleep(4), (200, {}))[1]
    slow.start()
    down.start()
    down.stop()  # its port refuses connections
    try:
        project, key, db = new_project(settings, [webhook("healthy", receiver.url), webhook("slow", slow.url),
                                                  webhook("dead", down.url)])
        sent = events(200, project)
        started = time.monotonic()
        send(stack, key, sent)
        wait_for(lambda: count_rows(clickhouse, db) == 200, timeout_s=30)
        wait_for(lambda: receiver.delivered_ids(project) == {e["messageId"] for e in sent}, timeout_s=30)
        assert time.monotonic() - started < 15
        assert len(slow.delivered_ids(project)) < 200  # 4 s a batch of 50: still at it
        wait_for(lambda: metric(stack, "headwater_forwarder_failing", "dead") == 1, timeout_s=30)
    finally:
        slow.stop()


def test_no_event_is_missing_after_a_30_s_outage_of_the_destination(stack, settings, receiver):
    project, key, _ = new_project(settings, [webhook("flaky", receiver.url)])
    first = events(100, f"{project}-a")
    send(stack, key, first)
    wait_for(lambda: receiver.delivered_ids(project) == {e["messageId"] for e in first}, timeout_s=60)
    receiver.stop()
    second = events(150, f"{project}-b")
    sender = threading.Thread(target=send, args=(stack, key, second))
    sender.start()
    time.sleep(30)
    sender.join()
    assert metric(stack, "headwater_forwarder_failing", "flaky") == 1
    receiver.start()  # the same port
    wait_for(lambda: receiver.delivered_ids(project) == {e["messageId"] for e in first + second}, timeout_s=60)


def held(forwarder, destination: str) -> bool:
    """Whether the forwarder's run logged that it holds a batch of ``destination`` (project/name) before the
    commit; every project's destinations share the forwarder, so other lines interleave."""
    return any("fault_hold" in line and destination in line for line in forwarder.log_of_this_run().splitlines())


def test_no_event_is_missing_after_a_kill_9_of_the_forwarder_between_delivery_and_commit(stack, settings, receiver):
    project, key, _ = new_project(settings, [webhook("crashy", receiver.url)])
    with stack.restarted_with("forwarder", HEADWATER_FORWARD_FAULT_HOLD_S="120") as forwarder:
        first = events(120, f"{project}-a")
        send(stack, key, first)
        wait_for(lambda: receiver.delivered_ids(project), timeout_s=60)  # delivered, held before the commit
        wait_for(lambda: held(forwarder, f"{project}/crashy"))
        forwarder.proc.kill()
        forwarder.proc.wait()
        before_crash = len(receiver.delivered(project))
        second = events(80, f"{project}-b")
        send(stack, key, second)
    wanted = {e["messageId"] for e in first + second}
    wait_for(lambda: receiver.delivered_ids(project) == wanted, timeout_s=90)
    assert len(receiver.delivered(project)) > len(wanted) >= before_crash  # the held batch went again


def test_segment_destination_forwards_to_another_headwater_in_segments_wire_format(stack, settings, clickhouse):
    target = Admin(settings).create_project(prefix="target")
    target_db = target["project"]["database"]
    destination = {"name": "mirror", "type": "segment",
                   "settings": {"url": stack.collector_url, "write_key": target["keys"]["server_key"]}}
    project, key, _ = new_project(settings, [destination])
    sent = events(70, project)
    send(stack, key, sent)
    wait_for(lambda: count_rows(clickhouse, target_db) == 70, timeout_s=90)
    stored = clickhouse.execute(f"SELECT message_id, event FROM {target_db}.events FINAL ORDER BY message_id")
    assert sorted(stored) == sorted((e["messageId"], e["event"]) for e in sent)


async def test_kafka_destination_writes_each_selected_event_keyed_by_visitor(stack, settings):
    topic = f"team-events-{int(time.time())}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])  # the team's own
    finally:
        await admin.close()
    destination = {"name": "stream", "type": "kafka", "when": {"event": "Order *"},
                   "settings": {"bootstrap_servers": settings.kafka_bootstrap, "topic": topic}}
    project, key, _ = new_project(settings, [destination])
    sent = events(50, project)
    send(stack, key, sent)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        seen: dict[str, bytes] = {}
        deadline = time.monotonic() + 60
        while len(seen) < len(orders(sent)) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    event = orjson.loads(record.value)
                    seen[event["messageId"]] = record.key
    finally:
        await consumer.stop()
    assert set(seen) == orders(sent)
    assert all(seen[e["messageId"]] == e["anonymousId"].encode() for e in sent if e["messageId"] in seen)


def lake_ids(s3_server, project: str) -> list[str]:
    filesystem = pafs.S3FileSystem(access_key=s3_server.ACCESS_KEY, secret_key=s3_server.SECRET_KEY,
                                   endpoint_override=s3_server.endpoint, scheme="http", region="us-east-1")
    files = [info.path for info in filesystem.get_file_info(pafs.FileSelector(f"lake/hw/project={project}",
                                                                               recursive=True, allow_not_found=True))
             if info.path.endswith(".parquet")]
    return [i for path in files for i in pq.read_table(path, filesystem=filesystem).column("message_id").to_pylist()]


def test_the_lake_holds_each_event_once_after_a_kill_9_and_a_replay(stack, settings, s3_server):
    lake = {"name": "lake", "type": "lake", "batch": {"max_events": 60, "max_ms": 300},
            "settings": {"url": "s3://lake/hw", "endpoint": s3_server.endpoint, "scheme": "http",
                         "access_key_id": s3_server.ACCESS_KEY, "secret_access_key": s3_server.SECRET_KEY}}
    project, key, _ = new_project(settings, [lake])
    started_ms = int(time.time() * 1000)
    with stack.restarted_with("forwarder", HEADWATER_FORWARD_FAULT_HOLD_S="120") as forwarder:
        first = events(150, f"{project}-a")
        send(stack, key, first)
        wait_for(lambda: lake_ids(s3_server, project), timeout_s=60)  # written, held before the commit
        wait_for(lambda: held(forwarder, f"{project}/lake"))
        forwarder.proc.kill()
        forwarder.proc.wait()
        second = events(90, f"{project}-b")
        send(stack, key, second)
    wanted = sorted(e["messageId"] for e in first + second)
    wait_for(lambda: sorted(lake_ids(s3_server, project)) == wanted, timeout_s=90)
    delivered = metric(stack, "headwater_forwarder_delivered_total", "lake")
    reply = Admin(settings).call("POST", f"/v1/projects/{project}/destinations/lake/replay",
                                 {"from_ms": started_ms - 60_000})
    assert reply.status_code == 200, reply.text
    wait_for(lambda: metric(stack, "headwater_forwarder_delivered_total", "lake") >= delivered + len(wanted),
             timeout_s=60)  # every event written again, over the files that held it
    assert sorted(lake_ids(s3_server, project)) == wanted
    assert not Admin(settings).call("GET", f"/v1/projects/{project}").json()["project"]["destinations"][0].get("paused")


def test_the_destinations_page_shows_each_ones_figures_and_state_and_pauses_it(stack, settings, receiver):
    down = Receiver()
    down.start()
    down.stop()
    project, key, _ = new_project(settings, [webhook("crm", receiver.url), webhook("gone", down.url)])
    sent = events(40, project)
    send(stack, key, sent)
    wait_for(lambda: receiver.delivered_ids(project) == {e["messageId"] for e in sent}, timeout_s=60)
    cookies = dashboard_session(stack.dashboard_url, settings.admin_token)
    page_url = f"{stack.dashboard_url}/p/{project}/destinations"

    def row(name: str) -> dict[str, str]:
        page = httpx.get(page_url, cookies=cookies, timeout=30).text
        found = re.search(rf'<tr data-destination="{name}"([^>]*)>', page)
        return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', found.group(1))) if found else {}

    wait_for(lambda: float(row("crm").get("delivered-per-min", 0)) * 60 == 40, timeout_s=60)
    wait_for(lambda: row("gone").get("failing") == "true", timeout_s=60)
    last_error = re.search(r"<span data-last-error>last error: ([^<]*)</span>", httpx.get(page_url, cookies=cookies,
                                                                                       timeout=30).text)
    assert last_error and "ClientConnectorError" in last_error.group(1)  # as the forwarder said it
    paused = httpx.post(f"{page_url}/pause", data={"name": "crm"}, cookies=cookies,
                        headers={"Origin": stack.dashboard_url}, timeout=60)
    assert paused.status_code == 200 and row("crm")["paused"] == "true"
    refused = httpx.post(f"{page_url}/pause", data={"name": "crm"}, cookies=cookies, timeout=60)
    assert refused.status_code == 403  # not from the dashboard's own page
    more = events(10, f"{project}-while-paused")
    send(stack, key, more)
    time.sleep(3)
    assert not receiver.delivered_ids(project) & {e["messageId"] for e in more}
    resumed = httpx.post(f"{page_url}/resume", data={"name": "crm"}, cookies=cookies,
                         headers={"Origin": stack.dashboard_url}, timeout=60)
    assert resumed.status_code == 200 and row("crm")["paused"] == "false"
    wait_for(lambda: receiver.delivered_ids(project) >= {e["messageId"] for e in more}, timeout_s=60)
    page = httpx.get(page_url, cookies=cookies, timeout=30).text
    document = json.loads(html.unescape(re.search(r"data-destinations-document>(.*?)</textarea>", page, re.S).group(1)))
    assert [d["name"] for d in document] == ["crm", "gone"]
    save = f"{page_url}/save"
    bad = httpx.post(save, data={"destinations": '[{"name": "x", "type": "carrier-pigeon"}]'}, cookies=cookies,
                     headers={"Origin": stack.dashboard_url}, timeout=60)
    assert bad.status_code == 400 and "carrier-pigeon" in bad.text
    extra = webhook("extra", receiver.url, settings={"url": receiver.url, "secret": "sixteen-characters!"})
    saved = httpx.post(save, data={"destinations": json.dumps([*document, extra])}, cookies=cookies,
                       headers={"Origin": stack.dashboard_url}, timeout=60, follow_redirects=False)
    assert saved.status_code == 303
    stored = Admin(settings).call("GET", f"/v1/projects/{project}").json()["project"]["destinations"]
    assert [d["name"] for d in stored] == ["crm", "gone", "extra"] and stored[2]["settings"]["secret"] == "(set)"


def test_a_destinations_python_transformation_changes_its_events_and_its_failures_are_dead_letters(
        stack, settings, clickhouse, receiver):
    project, key, db = new_project(settings, [
        webhook("tiered", receiver.url, python="tag_order", when={"event": "Order *"}),
        webhook("broken", receiver.url, python="explode", when={"event": "Page Seen"})])
    sent = [{**e, "properties": {**e["properties"], "total": 150 if i % 4 == 0 else 20}}
            for i, e in enumerate(events(40, project))]
    send(stack, key, sent)
    wait_for(lambda: receiver.delivered_ids(project) == orders(sent), timeout_s=60)
    tiers = {e["messageId"]: e["properties"]["tier"] for e in receiver.delivered(project)}
    assert tiers == {e["messageId"]: "gold" if e["properties"]["total"] >= 100 else "standard"
                     for e in sent if e["event"] == "Order Completed"}
    dead = f"SELECT count(), any(reason), any(step) FROM {db}.failed_events WHERE step = 'forward:broken'"
    wait_for(lambda: clickhouse.execute(dead)[0][0] == 20, timeout_s=60)
    assert clickhouse.execute(dead)[0][1:] == ("transform_error", "forward:broken")
    # what a destination does never touches what is stored (the indexer, another consumer group, may
    # store them after the destinations have delivered)
    wait_for(lambda: count_rows(clickhouse, db) >= 40, timeout_s=60)
    assert count_rows(clickhouse, db) == 40


def test_the_segment_destination_speaks_posthogs_batch_capture_when_told_to(stack, settings, receiver):
    destination = {"name": "ph", "type": "segment", "when": {"event": "Order *"},
                   "settings": {"url": f"http://127.0.0.1:{receiver.port}", "write_key": "phc_test", "format": "posthog"}}
    project, key, _ = new_project(settings, [destination])
    sent = [{**e, "userId": f"user-{i}"} for i, e in enumerate(events(10, project))]
    send(stack, key, sent)

    def captured() -> list[dict]:
        return [event for status, _, body in list(receiver.requests) if body.get("api_key") == "phc_test"
                for event in body["batch"] if event["properties"].get("i") is not None]

    wait_for(lambda: len(captured()) == 5, timeout_s=60)
    assert all(headers["content-type"] == "application/json" and "authorization" not in headers
               for _, headers, _ in receiver.requests)
    assert sorted((e["event"], e["distinct_id"], e["properties"]["i"]) for e in captured()) == \
        sorted(("Order Completed", f"user-{i}", i) for i in range(0, 10, 2))
