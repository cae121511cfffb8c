"""The processors' per-event cost in-process (part of `make bench`): the collector's per-event checks
and stamping, validate, enrich, anonymize (also with every part of a privacy policy: RE2 masks,
dropped names, hashed traits) and the sessionizer's per-poll work on realistic envelopes, without
Kafka, so a change to a step's code shows in its own figure.

100,000 events of 5,000 visitors, each visitor with its own IPv4 (one in five IPv6) address and one of
a dozen real user agents; page URLs with and without UTM parameters; referrers from search, social
and other sites; a privacy policy that truncates IPs and hashes the user id. Best of 3 runs, µs per
event, to bench/results/hotpath.json. ``BENCH_PROFILE=anonymize`` (or another step) prints that
step's cProfile instead.
"""

from __future__ import annotations

import copy
import cProfile
import json
import os
import pstats
import time
import tracemalloc
from datetime import date

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.run import RESULTS
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects
from headwater.settings import Settings
from headwater.topics import step_topic, topic_specs
from identity.book import IdentityBook
from identity.graph import IdentityOptions, ProjectGraph
from processors.anonymize import Anonymize
from processors.base import Processor, encode_groups, transform_for
from processors.enrich import Enrich
from processors.session_book import SessionBook, options_in
from processors.validate import Validate

EVENTS = 100_000
VISITORS = 5_000
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
]
REFERRERS = ["", "", "https://www.google.com/search?q=kettle", "https://t.co/abc", "https://news.ycombinator.com/",
             "https://partner.example/blog/post"]
PROJECT = Project("bench", "Bench", 0, privacy={"ip": "truncate", "hash_fields": ["userId"]},
                  hash_keys=[{"id": "k1", "secret": "bench-secret", "created_at_ms": 0}])
# the same with every part of the policy: masks (on RE2) over properties, traits and URLs, dropped names
MASKED = Project("bench", "Bench", 0, privacy={"ip": "truncate", "hash_fields": ["userId", "traits.email"],
                                              "drop_properties": ["password", "card_*"],
                                              "mask_patterns": ["email", "phone"]},
                 hash_keys=[{"id": "k1", "secret": "bench-secret", "created_at_ms": 0}])


class OneSalt:
    salts = {date(2026, 11, 22): b"s" * 32}

    def salt_for(self, day: date) -> bytes:
        return b"s" * 32


def ip_of(visitor: int) -> str:
    if visitor % 5 == 0:
        return f"2001:db8:{visitor % 65536:x}::{visitor % 997:x}"
    return f"{81 + visitor % 100}.{visitor % 251}.{visitor // 251 % 256}.{visitor % 199 + 1}"


def envelopes() -> list[Envelope]:
    out = []
    for n in range(EVENTS):
        visitor = n % VISITORS
        path = f"/products/{n % 40}"
        query = "?utm_source=news&utm_medium=email&utm_campaign=autumn" if n % 7 == 0 else ""
        page = {"url": f"https://shop.example{path}{query}", "path": path, "referrer": REFERRERS[n % len(REFERRERS)]}
        event = {"type": "page" if n % 4 else "track", "event": "Added To Cart", "messageId": f"m{n}",
                 "anonymousId": f"v{visitor}", "userId": f"user{visitor}" if visitor % 3 == 0 else None,
                 "timestamp": "2026-11-22T11:59:00.000Z", "properties": {"sku": f"k{n % 40}", "price": 9.5},
                 "context": {"ip": ip_of(visitor), "userAgent": USER_AGENTS[visitor % len(USER_AGENTS)],
                             "page": page, "locale": "en-GB", "library": {"name": "headwater.js"}}}
        if event["userId"] is None:
            del event["userId"]
        out.append(Envelope("bench", f"m{n}", 1_795_348_740_000, "r1", event, ip_of(visitor),
                            USER_AGENTS[visitor % len(USER_AGENTS)]))
    return out


def steps() -> list:
    store = FixedProjects(PROJECT)
    return [Validate(Settings(), store), Enrich(Settings(), store), Anonymize(Settings(), store, OneSalt())]


def collector_us(inputs: list[Envelope]) -> float:
    """The collector's per-event checks (schema, size, the time window) and stamping, on the events as
    a sender sends them; best of three, µs per event."""
    from collector.ingest import Ingest
    from collector.stamp import stamp

    ingest = Ingest(Settings(), FixedProjects(PROJECT))
    best = float("inf")
    for _ in range(3):
        events = [copy.deepcopy(e.event) for e in inputs]
        started = time.perf_counter()
        for event in events:
            ingest.problems(event, 1_795_348_740_000)
            stamp(event, "bench", "r1", 1_795_348_740_000, None, None)
        best = min(best, time.perf_counter() - started)
    return best / len(inputs) * 1e6


def time_step(step, inputs: list[Envelope]) -> tuple[float, list[Envelope]]:
    """Best of three, µs per event; and the step's outputs (the next step's inputs)."""
    best, outputs = float("inf"), []
    for _ in range(3):
        batch = copy.deepcopy(inputs)
        started = time.perf_counter()
        outputs = [step.process(e) for e in batch]
        best = min(best, time.perf_counter() - started)
    return best / len(inputs) * 1e6, outputs


def sessionize_us(inputs: list[Envelope], profile: bool) -> float:
    """The sessionizer's per-poll work without Kafka: records of 100 envelopes in (with their visits,
    as the step before sends them), events for the next step, session rows and changelog records out
    (:meth:`SessionBook.poll`, what each of the sessionizer's transactions writes)."""

    topic = step_topic(Settings(), "sessionize")
    records = [ConsumerRecord(topic, 0, n, 0, 0, out.key, out.value, None, 0, 0, out.headers)
               for n, out in enumerate(out for i in range(0, len(inputs), 100)  # as anonymize sends them
                                       for out in encode_groups(topic, ("sessionize", "index"), inputs[i:i + 100]))]
    polls = [records[i:i + 20] for i in range(0, len(records), 20)]  # 2,000 events a poll
    best = float("inf")
    for attempt in range(3):
        counts = PartitionMap()
        counts.counts = {spec.name: 1 for spec in topic_specs(Settings())}
        book = SessionBook(Settings(), options_in(Settings(), FixedProjects(PROJECT)), counts)
        tp = TopicPartition(step_topic(Settings(), "sessionize"), 0)

        def run(book: SessionBook = book, tp: TopicPartition = tp) -> None:
            for poll in polls:
                book.poll({tp: poll}, time.monotonic())

        started = time.perf_counter()
        if profile and attempt == 0:
            profiler = cProfile.Profile()
            profiler.runcall(run)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        else:
            run()
            best = min(best, time.perf_counter() - started)
    return best / len(inputs) * 1e6


def identity_us(inputs: list[Envelope]) -> dict[str, float]:
    """The identity role's per-poll work without Kafka (:meth:`IdentityBook.poll`) on records of 100
    stored envelopes, polls of 20 records, µs per event: with no ``identify`` among them (each record
    skipped on a substring test), and with every 50th event an ``identify`` of its visitor (2%; the
    first of each visitor merges, the rest change nothing). And the state's memory, bytes per merged id."""
    topic = step_topic(Settings(), "index")
    identifying = copy.deepcopy(inputs)
    for n in range(0, len(identifying), 50):
        event = identifying[n].event
        event.update(type="identify", userId=f"user{n % VISITORS}", traits={"plan": "pro"})
        event.pop("event", None)
    result = {}
    for name, events in (("identity_no_identifies", inputs), ("identity_2pct_identifies", identifying)):
        records = [ConsumerRecord(topic, 0, i, 0, 0, b"k", encode_batch(events[i:i + 100]), None, 0, 0, [])
                   for i in range(0, len(events), 100)]
        polls = [{TopicPartition(topic, 0): records[i:i + 20]} for i in range(0, len(records), 20)]
        best = float("inf")
        for _ in range(3):
            book = identity_book()
            started = time.perf_counter()
            for poll in polls:
                book.poll(poll, 0.0)
            best = min(best, time.perf_counter() - started)
        result[name] = best / len(events) * 1e6
    return result


def alert_rules(kind_count: int = 50) -> dict:
    """50 rules of each kind, as a busy project might have them: event rules on rarer events, visitor
    rules on traits and the entry page, threshold rules on the commonest events in 10-minute windows."""
    rules = []
    for i in range(kind_count):
        rules.append({"name": f"event-{i}", "kind": "event", "when": {"all": [
            {"event": f"Order Completed {i}"}, {"field": "properties.price", "gt": 1000}]}})
        rules.append({"name": f"visitor-{i}", "kind": "visitor", "after_days": 7, "when": {"any": [
            {"field": "traits.plan", "equals": f"enterprise-{i}"}, {"field": "context.page.path", "equals": f"/vip/{i}"}]}})
        rules.append({"name": f"threshold-{i}", "kind": "threshold", "window_s": 600,
                      "when": {"event": "Added To Cart"} if i % 2 else {"type": "page"},
                      "change": {"against": "week", "drop_pct": 50}})
    return {"rules": rules}


def with_persons_and_cohorts(raw: dict) -> dict:
    """The same rules, 10 of the threshold rules counting persons and 10 of the visitor rules naming a
    cohort."""
    rules = [dict(rule) for rule in raw["rules"]]
    for rule in [r for r in rules if r["kind"] == "threshold"][:10]:
        rule["count"] = "persons"
    for rule in [r for r in rules if r["kind"] == "visitor"][:10]:
        rule["cohort"] = "buyers"
    return {"rules": rules}


def role_lookups(inputs: list[Envelope]):
    """The role's lookups with every other visitor merged into a person and a member of the cohort."""
    from clickhouse_cityhash.cityhash import CityHash64

    from alerts.lookups import CohortMembers, PersonMap, RoleLookups

    persons = PersonMap(Settings())
    visitors = sorted({e.visitor_id for e in inputs})[::2]
    persons.person = {f"bench:{v}": f"person-{i // 2}" for i, v in enumerate(visitors)}
    cohorts = CohortMembers(Settings(), None, lambda project: None)  # type: ignore[arg-type]
    cohorts.members = {("bench", "buyers"): frozenset(CityHash64(v) for v in visitors)}
    return RoleLookups(persons, cohorts)


def alerts_us(inputs: list[Envelope]) -> dict[str, float]:
    """The alerts role's per-poll work without Kafka (:meth:`AlertBook.poll`), 150 rules (50 of each
    kind), polls of 20 records of 100 stored envelopes, µs per event; the same with persons counted and
    cohorts tested (:func:`with_persons_and_cohorts`); beside them, decoding the same records alone
    (what any reader of the stored events pays)."""
    result = {"alerts_150_rules": alerts_poll_us(inputs, alert_rules(), None),
              "alerts_150_rules_persons_cohorts": alerts_poll_us(inputs, with_persons_and_cohorts(alert_rules()),
                                                                 role_lookups(inputs))}
    values = [encode_batch(inputs[start:start + 100]) for start in range(0, len(inputs), 100)]
    decode = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for value in values:
            decode_batch(value)
        decode = min(decode, time.perf_counter() - started)
    return {**result, "alerts_decode_only": decode / len(inputs) * 1e6}


def alerts_poll_us(inputs: list[Envelope], raw_rules: dict, lookups) -> float:
    from alerts.book import AlertBook
    from headwater.alerts import parse_alerts
    from headwater.routing import PROJECT_HEADER, SESSIONS_HEADER

    topic = step_topic(Settings(), "index")
    rules = parse_alerts(raw_rules)
    sessions = orjson.dumps([[f"s{i}", 1 + i % 9] for i in range(100)])
    headers = [(PROJECT_HEADER, b"bench"), (SESSIONS_HEADER, sessions)]
    records = [ConsumerRecord(topic, 0, i, 0, 0, b"k", encode_batch(inputs[i:i + 100]), None, 0, 0, headers)
               for i in range(0, len(inputs), 100)]
    polls = [{TopicPartition(topic, 0): records[i:i + 20]} for i in range(0, len(records), 20)]
    best = float("inf")
    for _ in range(3):
        book = AlertBook(Settings(), lambda project: rules, PartitionMap(), lookups)
        book.restoring([0])
        started = time.perf_counter()
        for poll in polls:
            book.poll(poll, 0.0)
        best = min(best, time.perf_counter() - started)
    return best / len(inputs) * 1e6


def identity_bytes_per_id(ids: int = 100_000) -> float:
    """The identity state's memory: a person of two ids (a user and one device) per two ids."""
    book = identity_book()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    graph = book.graphs.setdefault("bench", ProjectGraph())
    for n in range(ids // 2):
        graph.merge(f"user-{n:08d}", f"{n:08d}-7f3c-4e1a-9b7d-0c2a5e8f1b3d", 0, IdentityOptions())
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / ids


def identity_book() -> IdentityBook:
    counts = PartitionMap()
    counts.counts = {spec.name: 1 for spec in topic_specs(Settings())}
    book = IdentityBook(Settings(), lambda project: IdentityOptions(), counts)
    book.restoring([0])
    return book


def geoip_us(inputs: list[Envelope]) -> tuple[float, float]:
    """Enrich's GeoIP lookup per event (with its check for a replaced database file), and the engine's
    own lookup (maxminddb) on the same addresses: best of three, µs per event."""
    import tempfile
    from pathlib import Path

    from processors.enrichments.geoip import GeoIP
    from tests.geoip import build_city_database

    with tempfile.TemporaryDirectory() as directory:
        geoip = GeoIP(str(build_city_database(Path(directory) / "city.mmdb")))
        addresses = [e.ip for e in inputs]
        best = {"geoip": float("inf"), "engine": float("inf")}
        for _ in range(3):
            for name, lookup in (("geoip", geoip.lookup), ("engine", geoip.reader.get)):
                started = time.perf_counter()
                for address in addresses:
                    lookup(address)
                best[name] = min(best[name], time.perf_counter() - started)
    return best["geoip"] / len(inputs) * 1e6, best["engine"] / len(inputs) * 1e6


# Ten tests over the steps' conditions, the shape a team's flow takes: what a step applies to, and
# what is not stored (bench: routing_conditional against routing_fixed)
TEN_RULES = [
    {"step": "validate"},
    {"step": "enrich", "when": {"all": [{"type": ["track", "page"]},
                                        {"not": {"field": "context.library.name", "equals": "analytics-node"}}]}},
    {"step": "anonymize", "when": {"any": [{"event": "Order *"}, {"event": ["Added To Cart", "Signed Up"]},
                                           {"field": "properties.price", "gte": 1}, {"field": "userId", "exists": True}]}},
    {"step": "sessionize", "when": {"not": {"field": "context.page.path", "equals": "/health"}}},
    {"step": "index", "when": {"all": [{"not": {"field": "properties.test", "equals": True}},
                                       {"not": {"field": "properties.sku", "in": ["k-test", "k-dev"]}},
                                       {"field": "anonymousId", "exists": True}]}},
]


def routing_us(inputs: list[Envelope]) -> tuple[float, float]:
    """The mediator's work on raw records of 100 events (:meth:`Mediator.route`), best of three, µs
    per event: with the default flow (records merged, never decoded) and with :data:`TEN_RULES` (each
    event decoded, routed and encoded again)."""
    import asyncio

    from headwater.envelope import encode_batch
    from headwater.routing import EVENTS_HEADER, PROJECT_HEADER
    from mediator.service import Mediator

    async def measure() -> tuple[float, float]:
        mediator = Mediator(Settings(), lambda settings, projects: None)
        mediator.store.projects.update(fixed=Project("fixed", "F", 0), rules=Project("rules", "R", 0, flow=TEN_RULES))
        figures = []
        for project in ("fixed", "rules"):
            records = [ConsumerRecord("raw", i % 4, i, 0, 0, b"k", encode_batch(inputs[i:i + 100]), None, 0, 0,
                                      [(PROJECT_HEADER, project.encode()), (EVENTS_HEADER, b"100")])
                       for i in range(0, len(inputs), 100)]
            best = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                for start in range(0, len(records), 20):  # polls of 20 records
                    mediator.route(records[start:start + 20])
                best = min(best, time.perf_counter() - started)
            figures.append(best / len(inputs) * 1e6)
        await mediator.relay.consumer.stop()
        await mediator.relay.producer.stop()
        return figures[0], figures[1]

    return asyncio.run(measure())


# A declarative transform step of five operations, as a team writes one, and a Python one (bench/transforms)
DECLARATIVE = {"step": "transform", "name": "tidy", "do": [
    {"set": "properties.currency", "value": "EUR"}, {"rename": "properties.sku", "to": "properties.product"},
    {"drop": ["context.locale", "properties.debug"]},
    {"lookup": "context.library.name", "table": {"headwater.js": "web", "analytics-node": "server"},
     "to": "properties.source", "default": "other"},
    {"drop_if": {"field": "properties.test", "equals": True}}]}
PYTHON = {"step": "transform", "name": "bands", "python": "price_band"}


def transform_us(inputs: list[Envelope]) -> dict[str, float]:
    """The transform step, µs per event: a declarative step, a Python one, and the Python function alone
    (what the step adds: the event's copy, the time budget's alarm, the result's checks, lineage)."""
    from pathlib import Path

    from headwater.plugins import TransformContext, installed
    from processors.transform import Transform as TransformStep

    settings = Settings(transforms_dir=str(Path(__file__).parent / "transforms"))
    store = FixedProjects(Project("bench", "Bench", 0, flow=[DECLARATIVE, PYTHON, "index"]))
    step = TransformStep(settings, store)
    function = installed(settings.transforms_dir)[0]["price_band"].function
    context = TransformContext("bench", "m", 0, "bands", "1.0.0")
    function_only = _best(lambda batch: [function(e.event, context) for e in batch], inputs)
    return {"transform_declarative": time_step(step.bound("transform:tidy"), inputs)[0],
            "transform_python": time_step(step.bound("transform:bands"), inputs)[0],
            "transform_python_function_only": function_only}


class PassOn(Processor):
    """A step that changes nothing: what the relay's transform costs around a step."""

    name = "validate"

    def process(self, envelope: Envelope) -> Envelope:
        return envelope


def step_counts_us(inputs: list[Envelope]) -> dict[str, float]:
    """What counting each record's events (:mod:`headwater.step_counts`) adds to a relay's transform,
    µs per event, on records of one event (the browser's traffic, the most records per event), best
    of three: the transform around a step that changes nothing, without and with the counts."""
    from headwater.envelope import encode_batch
    from headwater.routing import encode_route
    from headwater.step_counts import StepCounts

    settings = Settings()
    partitions = PartitionMap()
    partitions.counts = {spec.name: 12 for spec in topic_specs(settings)}
    records = [ConsumerRecord(step_topic(settings, "validate"), 0, i, 0, 0, b"k", encode_batch([e]), None, 0, 0,
                              encode_route(["validate", "index"])) for i, e in enumerate(inputs)]
    figures = {}
    for name, counts in (("relay_one_event_records", None), ("relay_one_event_records_counted", StepCounts(settings))):
        transform = transform_for(PassOn(settings), partitions, counts=counts)
        figures[name] = _best(lambda _, transform=transform: [transform(records[i:i + 200])
                                                              for i in range(0, len(records), 200)], inputs)
    return figures


def _best(run, inputs: list[Envelope]) -> float:
    best = float("inf")
    for _ in range(3):
        batch = copy.deepcopy(inputs)
        started = time.perf_counter()
        run(batch)
        best = min(best, time.perf_counter() - started)
    return best / len(inputs) * 1e6


def main() -> None:
    profile = os.environ.get("BENCH_PROFILE")
    inputs, result = envelopes(), {}
    result["collector"] = collector_us(inputs)
    result["routing_fixed"], result["routing_conditional"] = routing_us(inputs)
    result["geoip_lookup"], result["geoip_engine_only"] = geoip_us(inputs)
    result["anonymize_all_parts"] = time_step(Anonymize(Settings(), FixedProjects(MASKED), OneSalt()),
                                              time_step(steps()[1], inputs)[1])[0]
    for step in steps():
        if step.name == profile:
            profiler = cProfile.Profile()
            profiler.runcall(lambda step=step, inputs=inputs: [step.process(e) for e in copy.deepcopy(inputs)])
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        result[step.name], inputs = time_step(step, inputs)
    result.update(transform_us(inputs))
    result.update(step_counts_us(inputs))
    result["sessionize"] = sessionize_us(inputs, profile == "sessionize")
    result.update(identity_us(inputs))
    result.update(alerts_us(inputs))
    result = {name: round(us, 2) for name, us in result.items()}
    memory = {"identity_bytes_per_merged_id": round(identity_bytes_per_id())}
    print(json.dumps({**result, **memory}))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hotpath.json").write_text(json.dumps({"us_per_event": result, "events": EVENTS, **memory},
                                                     indent=2) + "\n")


if __name__ == "__main__":
    main()
