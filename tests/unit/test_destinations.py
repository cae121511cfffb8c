"""Destinations without servers: their definitions, secrets, outcomes, addresses, signatures, batch ids
and the lake's files on a local directory."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from forwarder.addresses import AddressRefused, is_public, resolve
from forwarder.http import Poster
from forwarder.lake import Lake, file_name, first_event_of, runs
from forwarder.outcomes import Delivered, Item, Refused, Retry, http_outcome
from forwarder.registry import check_project
from forwarder.segment import batch_url, posthog_event
from forwarder.service import Forwarders, batch_id
from forwarder.webhook import sign
from headwater.destinations import (
    SHOWN_SECRET,
    DestinationError,
    merge_stored,
    opened,
    parse_destinations,
    sealed,
    shown,
)
from headwater.projects.model import Project
from headwater.sealing import Sealer
from headwater.settings import Settings

DAY_MS = 86_400_000


def hook(name: str = "crm", **extra) -> dict:
    return {"name": name, "type": "webhook", "settings": {"url": "https://hooks.example.com/in"}, **extra}


def test_a_destination_is_parsed_with_its_condition_transformation_and_batch():
    [spec] = parse_destinations("shop", [hook(when={"event": "Order *"}, batch={"max_events": 10, "max_ms": 50},
                                              do=[{"set": "properties.via", "value": "headwater"}])])
    assert (spec.key, spec.group_id, spec.max_events, spec.max_ms) == ("shop/crm", "headwater-forwarder-shop-crm", 10, 50)
    assert spec.select({"event": "Page Viewed"}) is None
    assert spec.select({"event": "Order Completed", "properties": {}})["properties"] == {"via": "headwater"}


def test_every_problem_of_the_destinations_is_named():
    with pytest.raises(DestinationError) as caught:
        parse_destinations("shop", [hook(), hook(), {"name": "bad name", "type": "webhook", "when": {"nope": 1}},
                                    hook("b", batch={"max_events": 0}), hook("c", paused="yes"), "x"])
    text = str(caught.value)
    for expected in ("used twice", "destinations[2].name", "destinations[2].when", "max_events",
                     "destinations[4].paused", "destinations[5]"):
        assert expected in text


def test_a_python_transformation_is_named_instead_of_operations_and_must_be_installed():
    [spec] = parse_destinations("shop", [hook(python="tag_order")])
    assert spec.python == "tag_order" and spec.apply is None
    with pytest.raises(DestinationError, match="python"):
        parse_destinations("shop", [hook(python="tag_order", do=[{"drop": "properties.x"}])])
    settings = Settings(transforms_dir=str(Path(__file__).parents[1] / "transforms"))
    assert check_project(project_with([hook(python="tag_order")]), settings) == []
    assert "no transformation 'nope' is installed" in " ".join(check_project(project_with([hook(python="nope")]),
                                                                             settings))


def test_secrets_are_sealed_in_the_topic_never_shown_and_kept_when_left_out():
    stored = [hook(settings={"url": "https://h.example/in", "secret": "s3cret-of-16-chars!"})]
    sealer = Sealer("k" * 32)
    on_topic = sealed(stored, sealer)
    assert on_topic[0]["settings"]["secret"].startswith("sealed:v1:")
    assert opened(on_topic, sealer) == stored
    assert shown(stored)[0]["settings"]["secret"] == SHOWN_SECRET
    resent = merge_stored(shown(stored), stored, now_ms=5)
    assert resent[0]["settings"]["secret"] == "s3cret-of-16-chars!"
    assert resent[0]["created_at_ms"] == 5
    removed = merge_stored([hook(settings={"url": "https://h.example/in", "secret": None})],
                           [{**stored[0], "created_at_ms": 1}], now_ms=9)
    assert "secret" not in removed[0]["settings"] and removed[0]["created_at_ms"] == 1


def project_with(destinations: list, flow: list | None = None) -> Project:
    return Project("shop", "shop", 0, flow=flow, destinations=destinations)


def test_the_registry_checks_types_settings_and_that_the_privacy_policy_applies():
    settings = Settings(forward_local_dir="/srv/lake")
    assert check_project(project_with([hook()]), settings) == []
    problems = " ".join(check_project(project_with(
        [hook(settings={"url": "ftp://x"}), {"name": "x", "type": "carrier-pigeon"},
         {"name": "l", "type": "lake", "settings": {"url": "file:///etc/cron.d"}},
         {"name": "k", "type": "kafka", "settings": {"bootstrap_servers": "nohost", "topic": "bad topic"}}]),
        settings))
    for expected in ("http or https URL", "carrier-pigeon", "below forward_local_dir", "bootstrap_servers", "topic:"):
        assert expected in problems
    assert "anonymize on every event" in " ".join(check_project(project_with([hook()], ["validate", "index"]), settings))
    conditional = ["validate", {"step": "anonymize", "when": {"event": "x"}}, "index"]
    assert "anonymize on every event" in " ".join(check_project(project_with([hook()], conditional), settings))


@pytest.mark.parametrize(("status", "outcome"), [
    (200, Delivered()), (204, Delivered()), (429, Retry("HTTP 429: ", 7.0)), (503, Retry("HTTP 503: ", 0.0)),
    (408, Retry("HTTP 408: ", 0.0)), (400, Refused("HTTP 400: ", per_event=True)),
    (401, Refused("HTTP 401: ")), (302, Refused("HTTP 302: "))])
def test_http_answers_are_delivered_retried_or_refused(status, outcome):
    assert http_outcome(status, "7" if status == 429 else None, "") == outcome


@pytest.mark.parametrize(("address", "public"), [
    ("93.184.216.34", True), ("127.0.0.1", False), ("10.1.2.3", False), ("169.254.169.254", False),
    ("192.168.0.1", False), ("::1", False), ("::ffff:127.0.0.1", False), ("fd00::1", False),
    ("2606:4700::1111", True), ("0.0.0.0", False), ("224.0.0.1", False)])
def test_only_public_addresses_are_public(address, public):
    assert is_public(address) is public


def test_a_name_that_resolves_to_loopback_is_refused_unless_private_networks_are_allowed():
    with pytest.raises(AddressRefused, match="not a public address"):
        asyncio.run(resolve("localhost", 80, allow_private=False))
    assert asyncio.run(resolve("localhost", 80, allow_private=True)) in ("127.0.0.1", "::1")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://localhost:9/hook",
                                 "http://169.254.169.254/latest/meta-data/"])
def test_a_post_to_a_private_address_is_refused_before_connecting(url):
    async def post():
        poster = Poster(Settings(forward_private_networks=False))
        try:
            return await poster.post(url, b"{}", {})
        finally:
            await poster.close()

    outcome = asyncio.run(post())
    assert isinstance(outcome, Refused) and "not a public address" in outcome.reason


def test_segment_events_become_posthog_capture_events():
    identify = {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"plan": "pro"},
                "messageId": "0b7e5a52-4f5e-4a8e-9d0b-1c2d3e4f5a6b", "timestamp": "2026-12-06T10:00:00.000Z"}
    assert posthog_event(identify) == {"event": "$identify", "distinct_id": "u1", "timestamp": "2026-12-06T10:00:00.000Z",
                                       "properties": {"$lib": "headwater", "$set": {"plan": "pro"}},
                                       "uuid": "0b7e5a52-4f5e-4a8e-9d0b-1c2d3e4f5a6b"}
    page = posthog_event({"type": "page", "anonymousId": "a1", "messageId": "not-a-uuid",
                          "context": {"page": {"url": "https://shop.example/x"}}, "properties": {"title": "X"}})
    assert page["event"] == "$pageview" and page["distinct_id"] == "a1" and "uuid" not in page
    assert page["properties"] == {"title": "X", "$lib": "headwater", "$current_url": "https://shop.example/x"}
    assert posthog_event({"type": "track", "event": "Order Completed", "anonymousId": "a"})["event"] == "Order Completed"
    assert batch_url("https://eu.i.posthog.com", "posthog") == "https://eu.i.posthog.com/batch/"
    assert batch_url("https://api.segment.io") == "https://api.segment.io/v1/batch"


def test_the_webhook_signature_is_an_hmac_of_time_and_body():
    signature = sign("secret-of-sixteen", 1700000000, b'{"a":1}')
    expected = hmac.new(b"secret-of-sixteen", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert signature == f"t=1700000000,v1={expected}"


def item(partition: int, offset: int, index: int = 0, day: int = 0, message: str = "") -> Item:
    event = {"messageId": message or f"m-{partition}-{offset}-{index}", "type": "track", "event": "E",
             "anonymousId": "v", "properties": {"n": offset}, "timestamp": "2026-12-06T10:00:00.000Z"}
    return Item(event, "v", 1_765_000_000_000 + day * DAY_MS, partition, offset, index)


def test_a_batch_id_depends_on_the_events_delivered_only():
    [spec] = parse_destinations("shop", [hook()])
    a = [item(0, 5), item(0, 6), item(1, 2)]
    assert batch_id(spec, a) == batch_id(spec, list(reversed(a)))
    assert batch_id(spec, a) != batch_id(spec, a[:2])


def test_the_lake_cuts_files_by_partition_and_day_and_names_them_by_their_first_event():
    cut = runs([item(1, 3), item(0, 9, day=1), item(0, 7), item(0, 8), item(0, 10)])
    assert [[(i.partition, i.offset) for i in run] for run in cut] == [[(0, 7), (0, 8)], [(0, 9)], [(0, 10)], [(1, 3)]]
    name = file_name("shop", "2026-12-06", item(2, 41, index=3))
    assert name == "project=shop/date=2026-12-06/part-00002-00000000000000000041-00003.parquet"
    assert first_event_of(name) == (2, 41, 3)


def lake_files(root) -> dict[str, list[str]]:
    return {str(path.relative_to(root)): pq.read_table(path).column("message_id").to_pylist()
            for path in sorted(root.rglob("*.parquet"))}


def test_lake_files_delivered_again_with_other_cuts_replace_the_ones_they_cover(tmp_path):
    settings = Settings(forward_local_dir=str(tmp_path))
    [spec] = parse_destinations("shop", [{"name": "lake", "type": "lake", "settings": {"url": f"file://{tmp_path}/l"}}])
    lake = Lake(spec, settings)
    events = [item(0, offset, index) for offset in range(3) for index in range(2)]
    for cut in ([events[:2], events[2:4], events[4:]], [events[:3], events[3:]], [events]):
        for batch in cut:
            assert asyncio.run(lake.deliver(batch, "b")) == Delivered()
    files = lake_files(tmp_path / "l")
    assert sorted(m for ids in files.values() for m in ids) == sorted(i.event["messageId"] for i in events)
    assert list(files) == ["project=shop/date=2025-12-06/part-00000-00000000000000000000-00000.parquet"]
    assert not list((tmp_path / "l").rglob(".*.tmp"))


def test_a_lake_keeps_the_events_typed_and_their_objects_as_json(tmp_path):
    settings = Settings(forward_local_dir=str(tmp_path))
    [spec] = parse_destinations("shop", [{"name": "lake", "type": "lake", "settings": {"url": f"file://{tmp_path}"}}])
    asyncio.run(Lake(spec, settings).deliver([item(0, 1)], "b"))
    [path] = tmp_path.rglob("*.parquet")
    row = pq.read_table(path).to_pylist()[0]
    assert (row["event"], row["properties"], row["kafka_offset"]) == ("E", '{"n":1}', 1)
    assert row["timestamp"].isoformat() == "2026-12-06T10:00:00+00:00"


def test_a_lake_outside_the_allowed_directory_is_refused(tmp_path):
    settings = dataclasses.replace(Settings(), forward_local_dir=str(tmp_path / "lakes"))
    project = project_with([{"name": "l", "type": "lake", "settings": {"url": f"file://{tmp_path}/lakes/../etc"}}])
    assert "below forward_local_dir" in " ".join(check_project(project, settings))


def test_a_forwarder_runs_no_destination_of_a_project_it_finds_problems_with_and_says_so_once():
    async def wanted() -> tuple[dict, dict, float]:
        forwarders = Forwarders(Settings(transforms_dir=""))  # the admin had tag_order installed; not here
        forwarders.store.projects = {"shop": project_with([hook(python="tag_order")]),
                                     "ok": Project("ok", "ok", 0, destinations=[hook(), hook("off", paused=True)])}
        first, logged = forwarders.wanted(), dict(forwarders.logged)
        forwarders.wanted()
        assert forwarders.logged == logged
        return first, logged, forwarders.metrics.refused_projects._value.get()

    running, logged, refused = asyncio.run(wanted())
    assert list(running) == ["ok/crm"] and refused == 1
    assert list(logged) == ["shop"] and "no transformation 'tag_order' is installed" in logged["shop"]
