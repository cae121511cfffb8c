"""Property-based fuzzing (Hypothesis) of everything that parses outside input:

- the collector's body reading (gzip, size limits, JSON) and envelope checks: a value or a 4xx
  ``ApiError``, nothing else;
- Kafka message values (``decode_batch``): envelopes or ``ValueError``, which the relays dead-letter;
- the processors on arbitrary events: validate passes an event on or rejects it with a typed reason;
  whatever it passes, enrich and anonymize process without raising; the URL, campaign, referrer,
  time and user-agent parsers never raise;
- end to end: malformed events sent through the real collector and pipeline land in
  ``failed_events`` with a reason, and never in ``events``.

The number of cases each property ran is printed at the end of the test session (see conftest.py).
"""

from __future__ import annotations

import asyncio
import gzip
import ipaddress
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.body import gunzip, read_json
from collector.errors import ApiError
from collector.ingest import Ingest, events_of
from collector.request import IngestRequest
from headwater.deadletter import Rejected
from headwater.envelope import decode_batch, encode_batch
from headwater.privacy import truncate_ip
from headwater.projects.store import FixedProjects
from headwater.settings import Settings
from headwater.timeutil import epoch_ms, parse_time
from processors.anonymize import Anonymize
from processors.enrich import Enrich
from processors.enrichments.referrers import classify_referrer
from processors.enrichments.urls import campaign, split_url
from processors.enrichments.useragent import parse_user_agent
from processors.validate import Validate
from tests.fuzz_cases import counted
from tests.geoip import build_city_database
from tests.unit.test_processors_units import FixedSalts, envelope, project

RECEIVED_MS = 1_795_348_740_000  # 2026-11-22T11:59:00Z

MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# what orjson can hand the code after parsing (it reads integers beyond 64 bits as floats)
json_scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20)
# what may arrive on the wire: also huge integers, Infinity and NaN
wire_scalars = json_scalars | st.integers(-2**90, 2**90) | st.floats()
wire_json = st.recursive(wire_scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=20).map(
    lambda v: json.dumps(v).encode())
TYPES = ["track", "page", "screen", "identify", "group", "alias", "bogus", "", 5, None]
KEYS = ["type", "event", "anonymousId", "userId", "messageId", "timestamp", "sentAt", "properties", "traits",
        "context", "name", "groupId", "previousId", "integrations"]
# events shaped like Segment calls, each field either plausible or arbitrary
segmentish = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(TYPES) | json_values,
    "event": st.text(max_size=30) | json_values,
    "anonymousId": st.text(max_size=30) | json_values,
    "userId": st.text(max_size=30) | json_values,
    "messageId": st.text(max_size=40) | json_values,
    "timestamp": st.sampled_from(["2026-11-22T10:00:00Z", "2026-13-45T99:00:00Z", "yesterday", "", "1e400"]) | json_values,
    "sentAt": st.text(max_size=30) | json_values,
    "properties": json_values,
    "traits": json_values,
    "context": st.fixed_dictionaries({}, optional={
        "ip": st.sampled_from(["81.2.69.160", "2001:db8:1::1", "999.1.1.1", "::", "garbage"]) | json_values,
        "userAgent": st.text(max_size=200) | json_values,
        "page": st.fixed_dictionaries({}, optional={"url": st.text(max_size=120) | json_values,
                                                    "referrer": st.text(max_size=120) | json_values}),
        "campaign": json_values}) | json_values,
    "name": st.text(max_size=20) | json_values,
})


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    path = build_city_database(tmp_path_factory.mktemp("geo") / "city.mmdb")
    store = FixedProjects(project(event_schemas={"Signed Up": [{"version": "1-0-0", "schema": {
        "type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}}]},
        privacy={"ip": "truncate", "hash": ["userId", "context.traits.email"], "drop": ["context.device.id"]}))
    return (Validate(Settings(), store), Enrich(Settings(geoip_path=str(path)), store),
            Anonymize(Settings(), store, FixedSalts()))


@MANY
@given(event=segmentish | json_values)
def test_processors_reject_with_a_reason_or_process(processors, event):
    counted("processors: validate, then enrich and anonymize on what it passes")
    validate, enrich, anonymize = processors
    item = envelope(event if isinstance(event, dict) else {"value": event})
    try:
        passed = validate.process(item)
    except Rejected as rejected:
        assert rejected.reason and isinstance(rejected.reason, str)
        return
    out = anonymize.process(enrich.process(passed))
    assert len(decode_batch(encode_batch([out]))) == 1  # still encodes for the next topic, and reads back


# events that pass validation, with arbitrary content where the enrichers and the privacy policy look
json_objects = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
valid_shaped = st.fixed_dictionaries({
    "type": st.sampled_from(["track", "page", "screen", "identify"]),
    "event": st.text(min_size=1, max_size=30), "anonymousId": st.text(min_size=1, max_size=30),
    "messageId": st.text(min_size=1, max_size=40), "timestamp": st.just("2026-11-22T11:59:00.000Z"),
    "properties": json_objects, "traits": json_objects,
    "context": st.fixed_dictionaries({
        "ip": st.sampled_from(["81.2.69.160", "2001:db8:1::1", "999.1.1.1", "::", "garbage", ""]),
        "userAgent": st.text(max_size=200),
        "page": st.fixed_dictionaries({"url": st.text(max_size=120) | st.sampled_from(
            ["https://shop.example/a?utm_campaign=x&utm_source=%ZZ", "http://[::1", "https://xn--/?" + "&" * 50]),
            "referrer": st.text(max_size=120) | st.just("https://www.google.com/search?q=x")}),
        "traits": json_objects, "campaign": json_objects, "device": json_objects}),
}, optional={"userId": st.text(min_size=1, max_size=30)})


@MANY
@given(event=valid_shaped)
def test_enrich_and_anonymize_take_any_valid_event(processors, event):
    validate, enrich, anonymize = processors
    try:
        passed = validate.process(envelope(event))
    except Rejected:
        return
    counted("enrich and anonymize on valid events with arbitrary content")
    out = anonymize.process(enrich.process(passed))
    assert "81.2.69.160" not in out.encode().decode()  # the policy truncates the IP everywhere


@MANY
@given(data=st.binary(max_size=300) | wire_json)
def test_message_values_decode_or_raise_value_error(data):
    counted("Kafka message values (decode_batch)")
    try:
        envelopes = decode_batch(data)
    except ValueError:
        return
    assert envelopes and all(isinstance(e.event, dict) for e in envelopes)


def _request(body: bytes, headers: dict[str, str]) -> IngestRequest:
    return IngestRequest(headers, "127.0.0.1", body)


@MANY
@given(body=st.binary(max_size=400) | wire_json, zipped=st.booleans(),
       garble=st.booleans())
def test_request_bodies_parse_or_answer_4xx(body, zipped, garble):
    counted("collector request bodies (gzip, limits, JSON)")
    if zipped:
        body = gzip.compress(body)
        body = body[: len(body) // 2] if garble else body
    headers = {"content-type": "application/json", **({"content-encoding": "gzip"} if zipped else {})}
    try:
        payload = read_json(_request(body, headers), 1024)
    except ApiError as error:
        assert 400 <= error.status < 500
        return
    assert isinstance(payload, dict)


@MANY
@given(body=st.binary(max_size=200))
def test_gunzip_of_anything(body):
    counted("gunzip of arbitrary bytes")
    try:
        assert len(gunzip(body, 10_000)) <= 10_000
    except ApiError as error:
        assert 400 <= error.status < 500


@pytest.fixture(scope="module")
def ingest():
    return Ingest(Settings(), store=None)


@MANY
@given(payload=st.dictionaries(st.sampled_from(["batch", "event", "type", "writeKey", "context"] + KEYS),
                               json_values | st.lists(segmentish, max_size=5), max_size=5),
       call=st.sampled_from(["track", "page", "identify", "batch"]))
def test_envelope_checks_accept_or_say_why(ingest, payload, call):
    counted("collector envelope checks")
    try:
        checked = ingest.check(events_of(payload, call, 2_000), RECEIVED_MS, single=call != "batch")
        valid, errors, _ = asyncio.run(checked)
    except ApiError as error:
        assert 400 <= error.status < 500 and error.reason
        return
    assert valid and all(isinstance(e, dict) for e in valid)
    assert all({"index", "field", "reason"} <= set(e) for e in errors)


@MANY
@given(text=st.text(max_size=200) | json_values, host=st.text(string.ascii_letters + ".-", max_size=30))
def test_url_referrer_time_and_user_agent_parsers_never_raise(text, host):
    counted("URL, campaign, referrer, time and user-agent parsers")
    page = split_url(text)
    if page:
        campaign(page["query"])
    classify_referrer(host, "shop.example", text if isinstance(text, str) else "")
    parse_time(text)
    epoch_ms(text)
    if isinstance(text, str):
        parse_user_agent(text)


def reference_truncation(address: str) -> str | None:
    """What truncate_ip computed before its fast path: ipaddress all the way."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False).network_address)


octets = st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "-1", "1e2", " 7", "٣", "256", ""])


@MANY
@given(address=st.lists(octets, min_size=3, max_size=5).map(".".join) | st.text(max_size=45)
       | st.ip_addresses().map(str))
def test_ip_truncation_agrees_with_ipaddress(address):
    counted("IP truncation against ipaddress")
    assert truncate_ip(address) == reference_truncation(address)


malformed = st.fixed_dictionaries({
    "type": st.just("track"), "event": st.just("Signed Up"), "anonymousId": st.text(string.ascii_letters, min_size=1,
                                                                                     max_size=12),
    "properties": st.fixed_dictionaries({}, optional={"plan": json_scalars.filter(lambda v: not isinstance(v, str))
                                                                | st.lists(st.integers(), max_size=2)}),
})
