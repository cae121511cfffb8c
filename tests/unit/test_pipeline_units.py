"""Pure parts of the pipeline, no servers: flow rules, routing slips, envelopes, clock skew, settings."""

from __future__ import annotations

import pytest

from collector.stamp import TimeWindow, stamp
from headwater.envelope import Envelope
from headwater.flow import DEFAULT_FLOW, FlowError, validate_flow
from headwater.routing import encode_route, read_route, remaining_route
from headwater.settings import load_settings
from headwater.timeutil import epoch_ms


def test_default_flow_is_valid_and_ends_in_index():
    assert validate_flow(DEFAULT_FLOW)[-1] == "index"


def test_flow_errors_are_reported_together():
    with pytest.raises(FlowError) as error:
        validate_flow(["enrich", "validate", "bogus"])
    message = str(error.value)
    assert "unknown step 'bogus'" in message
    assert "must end with 'index'" in message
    assert "keep the order" in message


def test_flow_may_skip_steps():
    assert validate_flow(["validate", "index"]) == ("validate", "index")


def test_routing_slip_pops_the_current_step():
    headers = encode_route(["validate", "enrich", "index"])
    assert read_route(headers) == ["validate", "enrich", "index"]
    assert remaining_route(headers, "validate") == ("enrich", "index")


def test_routing_slip_for_another_step_is_refused():
    with pytest.raises(ValueError):
        remaining_route(encode_route(["enrich", "index"]), "validate")
    with pytest.raises(ValueError):
        remaining_route([], "validate")


def test_envelope_round_trip_and_key():
    envelope = Envelope("shop", "m1", 1_700_000_000_000, "r1", {"anonymousId": "a1", "x": "ü"}, "1.2.3.4", "UA")
    decoded = Envelope.decode(envelope.encode())
    assert decoded == envelope
    assert decoded.key() == b"shop:a1"


@pytest.mark.parametrize("data", [b"", b"[]", b'{"v": 2}', b"\xff"])
def test_envelope_decode_rejects_other_bytes(data):
    with pytest.raises(ValueError):
        Envelope.decode(data)


WINDOW = TimeWindow(future_ms=86_400_000, past_ms=730 * 86_400_000)


def test_clock_skew_uses_sent_at():
    received = epoch_ms("2026-01-01T00:00:10Z")
    event = {"timestamp": "2030-05-05T10:00:00Z", "sentAt": "2030-05-05T10:00:05Z"}
    assert WINDOW.settle(event, received) is None
    assert event["timestamp"] == "2026-01-01T00:00:05.000Z"
    assert event["originalTimestamp"] == "2030-05-05T10:00:00Z"


def test_clock_skew_without_any_client_time_uses_received_at():
    event = {}
    assert WINDOW.settle(event, epoch_ms("2026-01-01T00:00:10Z")) is None
    assert event["timestamp"] == "2026-01-01T00:00:10.000Z"


def test_a_time_too_far_ahead_becomes_the_receive_time():
    received = epoch_ms("2026-01-01T00:00:10Z")
    event = {"timestamp": "9999-12-31T00:00:00Z"}
    assert WINDOW.settle(event, received) is None
    assert event["timestamp"] == "2026-01-01T00:00:10.000Z"
    assert event["originalTimestamp"] == "9999-12-31T00:00:00Z"


def test_a_time_within_a_day_ahead_is_kept():
    event = {"timestamp": "2026-01-01T20:00:00Z"}
    assert WINDOW.settle(event, epoch_ms("2026-01-01T00:00:10Z")) is None
    assert event["timestamp"] == "2026-01-01T20:00:00.000Z"


def test_a_time_too_old_is_refused():
    event = {"timestamp": "1900-01-01T00:00:00Z"}
    problem = WINDOW.settle(event, epoch_ms("2026-01-01T00:00:10Z"))
    assert problem["reason"] == "too_old" and problem["field"] == "timestamp"


@pytest.mark.parametrize("sent_at", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
def test_a_sent_at_nowhere_near_the_receive_time_is_not_trusted(sent_at):
    event = {"timestamp": "2026-01-01T00:00:00Z", "sentAt": sent_at}
    assert WINDOW.settle(event, epoch_ms("2026-01-01T00:00:10Z")) is None
    assert event["timestamp"] == "2026-01-01T00:00:00.000Z"


def test_stamp_generates_a_message_id_only_when_missing():
    kept = stamp({"messageId": "given"}, "p", "r", 0, None, None)
    made = stamp({}, "p", "r", 0, None, None)
    assert kept.message_id == "given"
    assert made.message_id and made.message_id == made.event["messageId"]


def test_settings_from_env_and_file(tmp_path):
    config = tmp_path / "headwater.toml"
    config.write_text('collector_port = 9999\ntopic_prefix = "from-file"\n')
    settings = load_settings({"HEADWATER_CONFIG": str(config), "HEADWATER_TOPIC_PREFIX": "from-env"})
    assert settings.collector_port == 9999
    assert settings.topic_prefix == "from-env"


def test_unknown_settings_are_refused(tmp_path):
    config = tmp_path / "headwater.toml"
    config.write_text("colector_port = 1\n")
    with pytest.raises(ValueError, match="colector_port"):
        load_settings({"HEADWATER_CONFIG": str(config)})


def test_relays_resend_on_what_a_broker_restart_raises_only():
    from aiokafka.errors import (
        KafkaTimeoutError,
        LeaderNotAvailableError,
        MessageSizeTooLargeError,
        NotEnoughReplicasError,
        OutOfOrderSequenceNumber,
    )

    from headwater.relay import _retriable

    for error in (LeaderNotAvailableError(), NotEnoughReplicasError(), KafkaTimeoutError(), OutOfOrderSequenceNumber(),
                  TimeoutError()):
        assert _retriable(error), error
    assert not _retriable(MessageSizeTooLargeError()) and not _retriable(ValueError())


@pytest.mark.parametrize("project_id", ["shop\n", "shop\r\n", "\nshop", "Shop", "", "a" * 49, "shop;drop"])
def test_a_project_id_must_be_whole_lower_case_words(project_id):
    from headwater.clickhouse import project_database

    with pytest.raises(ValueError):
        project_database(project_id)
    assert project_database("shop_2") == "hw_shop_2"


def test_an_origin_pattern_with_a_trailing_newline_is_refused():
    from headwater.projects.model import check_origin_pattern

    assert check_origin_pattern("https://shop.example\n") == "https://shop.example"  # stripped, not matched
    with pytest.raises(ValueError):
        check_origin_pattern("https://shop.example\n/x")
