"""Alert rules and the alerts role's state, without Kafka: what is refused, what fires, when a window
closes, and what a cooldown, quiet hours and the key limit hold back."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from alerts.book import AlertBook
from alerts.state import Limits, NoLookups, ProjectAlerts
from headwater.alerts import AlertsError, ThresholdRule, alert_id, check_alerts, parse_alerts
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.partitioning import PartitionMap
from headwater.routing import PROJECT_HEADER, SESSIONS_HEADER
from headwater.settings import Settings
from headwater.timeutil import iso_ms

MIN = 60_000
T0 = 1_780_000_200_000 - 1_780_000_200_000 % (10 * MIN)  # a window boundary
LIMITS = Limits(grace_ms=30_000, idle_ms=60_000, max_keys=1000)
LATER = T0 + 7 * 86_400_000  # the clock: every test's events are in its past


def envelope(at_ms: int, visitor: str = "v1", **event) -> Envelope:
    message_id = str(uuid.uuid4())
    body = {"type": "track", "messageId": message_id, "anonymousId": visitor, "timestamp": iso_ms(at_ms), **event}
    return Envelope("shop", message_id, at_ms, "r", body)


def test_bad_rules_are_refused_with_where_and_why():
    problems = check_alerts({"rules": [
        {"name": "Big Order", "kind": "event", "when": {"event": "Order Completed"}},
        {"name": "x", "kind": "hunch"},
        {"name": "t", "kind": "threshold", "window_s": 600, "every_s": 7, "above": 1, "below": 2},
        {"name": "u", "kind": "threshold", "window_s": 86_400, "every_s": 60, "change": {"against": "month"}},
        {"name": "e", "kind": "event"},
        {"name": "e", "kind": "event", "when": {"field": "properties.revenue", "gt": 1000}, "cooldown_s": -1},
        {"name": "f", "kind": "event", "when": {"field": "properties.revenue", "gt": "1000"}},
    ], "quiet_hours": {"from": "25:00", "to": "07:00", "tz": "Mars/Olympus"}, "extra": 1})
    assert any("alerts.rules[0].name must match" in p for p in problems)
    assert any("alerts.rules[1] (x).kind must be one of event, visitor, threshold" in p for p in problems)
    assert any("(t).every_s must be a whole number from 60 to 600" in p for p in problems)
    assert any("(t) needs exactly one of above, below, change" in p for p in problems)
    assert any("(u): window_s / every_s must be at most 60" in p for p in problems)
    assert any("(u).change.against must be day or week" in p for p in problems)
    assert any("(u).change needs exactly one of drop_pct, rise_pct" in p for p in problems)
    assert any("(e).when is needed" in p for p in problems)
    assert any("(e).cooldown_s must be a whole number" in p for p in problems)
    assert any("(f).when.gt: a number" in p for p in problems)
    assert any("the name 'e' is used twice" in p for p in problems)
    assert any("quiet_hours.from must be a time of day" in p for p in problems)
    assert any("quiet_hours.tz must be a time zone" in p for p in problems)
    assert any("alerts.extra is not a setting" in p for p in problems)
    assert check_alerts({}) == [] and check_alerts({"rules": []}) == []
    with pytest.raises(AlertsError):
        parse_alerts(["not", "an", "object"])


def test_an_event_rule_fires_on_each_matching_event_with_a_stable_id():
    alerts = parse_alerts({"rules": [{"name": "big-order", "kind": "event", "when": {"all": [
        {"event": "Order Completed"}, {"field": "properties.revenue", "gt": 1000}]}}]})
    state = ProjectAlerts("shop", LIMITS)
    big = envelope(T0, event="Order Completed", properties={"revenue": 1500})
    assert state.add(alerts, envelope(T0, event="Order Completed", properties={"revenue": 20}), 0, LATER) == []
    (raised,) = state.add(alerts, big, 0, LATER)
    assert raised.message_id == alert_id("shop", "big-order", "v1", big.message_id)
    assert raised.event["properties"]["rule"] == "big-order" and raised.event["properties"]["message_id"] == big.message_id
    again = ProjectAlerts("shop", LIMITS).add(alerts, big, 0, LATER)  # worked out again after a crash
    assert [a.message_id for a in again] == [raised.message_id]


def test_a_cooldown_holds_back_the_same_subject_but_not_another():
    alerts = parse_alerts({"rules": [{"name": "fail", "kind": "event", "when": {"event": "Signup Failed"},
                                      "cooldown_s": 600}]})
    state = ProjectAlerts("shop", LIMITS)
    fired = [len(state.add(alerts, envelope(T0 + i * MIN, visitor, event="Signup Failed"), 0, LATER))
             for i, visitor in enumerate(["a", "a", "b", "a"])]
    assert fired == [1, 0, 1, 0]
    assert len(state.add(alerts, envelope(T0 + 11 * MIN, "a", event="Signup Failed"), 0, LATER)) == 1


def test_a_threshold_window_closes_on_the_watermark_and_compares_with_a_fixed_number():
    alerts = parse_alerts({"rules": [{"name": "few-checkouts", "kind": "threshold", "when": {"event": "Checkout"},
                                      "window_s": 600, "below": 3}]})
    state = ProjectAlerts("shop", LIMITS)
    state.last_input_s = LATER / 1000  # not idle: only event time moves the watermark
    for at in (T0 + MIN, T0 + 2 * MIN, T0 + 12 * MIN):  # the first window starts at T0 + 10 min
        state.add(alerts, envelope(at, event="Checkout"), 0, LATER)
    assert state.values["n|few-checkouts"] == [T0 + 10 * MIN, T0 + 10 * MIN]
    assert state.close_windows(alerts, LATER, LATER / 1000) == []  # the window T0+10..T0+20 is still open
    state.add(alerts, envelope(T0 + 20 * MIN + 31_000, event="Page Viewed"), 0, LATER)  # event time passes end + grace
    (raised,) = state.close_windows(alerts, LATER, LATER / 1000)
    assert raised.event["properties"]["count"] == 1 and "1 events, below 3" in raised.event["properties"]["text"]
    assert raised.event["timestamp"] == iso_ms(T0 + 20 * MIN)
    assert state.values["n|few-checkouts"][0] == T0 + 20 * MIN and "w|few-checkouts|" + str(T0 + 10 * MIN) not in state.values


def test_a_drop_against_the_week_before_fires_and_normal_traffic_does_not():
    week = 7 * 86_400_000
    alerts = parse_alerts({"rules": [{"name": "drop", "kind": "threshold", "when": {"event": "Checkout"},
                                      "window_s": 600, "change": {"against": "week", "drop_pct": 50}}]})
    state = ProjectAlerts("shop", LIMITS)
    now = T0 + week + 60 * MIN
    state.last_input_s = now / 1000
    for week_offset, per_window in ((0, [10, 10]), (week, [9, 4])):  # the same two windows a week apart
        for w, n in enumerate(per_window):
            for i in range(n):
                state.add(alerts, envelope(T0 + week_offset + w * 10 * MIN + i * 1000, event="Checkout"), 0, now)
        state.add(alerts, envelope(T0 + week_offset + 30 * MIN, event="Page Viewed"), 0, now)
        raised = state.close_windows(alerts, now, now / 1000)
        if not week_offset:
            assert raised == []  # nothing to compare with yet
    assert [a.event["properties"]["count"] for a in raised] == [4]  # 9 against 10 is normal, 4 is a 60% drop
    assert raised[0].event["properties"]["before"] == 10


def test_an_idle_project_closes_its_windows_on_the_clock_and_late_events_are_not_counted():
    alerts = parse_alerts({"rules": [{"name": "none", "kind": "threshold", "when": {"event": "Checkout"},
                                      "window_s": 600, "below": 1}]})
    state = ProjectAlerts("shop", LIMITS)
    state.add(alerts, envelope(T0 - MIN, event="Checkout"), 0, T0)
    state.last_input_s = T0 / 1000
    assert state.close_windows(alerts, T0 + 10 * MIN, T0 / 1000 + 30) == []  # idle 30 s: not yet
    (raised,) = state.close_windows(alerts, T0 + 10 * MIN + 31_000, T0 / 1000 + 61)  # idle: the clock closes it
    assert raised.event["properties"]["count"] == 0
    state.add(alerts, envelope(T0 + MIN, event="Checkout"), 0, T0 + 11 * MIN)  # its window is closed
    state.flush_counts()
    assert state.late == 1


def test_a_future_timestamp_cannot_close_every_window():
    alerts = parse_alerts({"rules": [{"name": "none", "kind": "threshold", "window_s": 600, "below": 1}]})
    state = ProjectAlerts("shop", LIMITS)
    state.add(alerts, envelope(T0), 0, T0)
    state.add(alerts, envelope(T0 + 365 * 86_400_000), 0, T0)  # a sender's clock a year ahead
    assert state.values["m"] == T0 + LIMITS.grace_ms
    state.last_input_s = T0 / 1000
    assert state.close_windows(alerts, T0, T0 / 1000) == []


def test_a_returning_enterprise_visitor_raises_one_alert_per_session():
    alerts = parse_alerts({"rules": [{"name": "vip-back", "kind": "visitor", "after_days": 3, "when": {"all": [
        {"field": "traits.plan", "equals": "enterprise"}, {"field": "traits.email_domain", "equals": "acme.com"}]}}]})
    state = ProjectAlerts("shop", LIMITS)
    day = 86_400_000
    identify = envelope(T0, "anon-1", type="identify", userId="ann", traits={"plan": "enterprise",
                                                                              "email": "Ann@ACME.com"})
    state.add(alerts, identify, 1, LATER)
    page = dict(type="page", userId="ann", context={"page": {"path": "/pricing"}})
    assert state.add(alerts, envelope(T0 + day, "anon-1", **page), 1, LATER) == []  # back after 1 day
    back = [state.add(alerts, envelope(T0 + 5 * day + i * MIN, "anon-1", **page), i + 1, LATER) for i in range(3)]
    assert [len(a) for a in back] == [1, 0, 0]  # the session's first event only
    assert back[0][0].event["properties"]["page"] == {"path": "/pricing"}
    assert "back after 4.0 days" in back[0][0].event["properties"]["text"]
    other = envelope(T0 + 6 * day, "anon-2", type="page")  # no traits: not enterprise
    assert state.add(alerts, other, 1, LATER) == []


def test_quiet_hours_mark_the_alert_and_the_key_limit_stops_new_state():
    alerts = parse_alerts({"rules": [{"name": "e", "kind": "event", "when": {"type": "track"}, "cooldown_s": 60}],
                           "quiet_hours": {"from": "22:00", "to": "07:00", "tz": "UTC"}})
    state = ProjectAlerts("shop", Limits(30_000, 60_000, max_keys=3))  # m, the cooldown and the rate of a
    night = T0 - T0 % 86_400_000 + 23 * 3_600_000
    (quiet,) = state.add(alerts, envelope(night, "a"), 0, LATER)
    assert quiet.event["properties"]["quiet"] is True
    assert state.add(alerts, envelope(night, "b"), 0, LATER) == []  # its cooldown could not be kept
    assert state.dropped_keys == 1


def test_a_flood_of_matching_events_raises_at_most_the_cap_a_minute():
    alerts = parse_alerts({"rules": [{"name": "every", "kind": "event", "when": {"type": "track"}}]})
    state = ProjectAlerts("shop", Limits(30_000, 60_000, max_keys=100, max_per_minute=5))
    raised = [len(state.add(alerts, envelope(T0 + i * 100, f"v{i}"), 0, LATER)) for i in range(20)]
    assert sum(raised) == 5 and state.suppressed == 15
    assert len(state.add(alerts, envelope(T0 + MIN, "late-comer"), 0, LATER)) == 1  # a new minute


def test_the_book_reads_sessions_from_the_header_and_writes_alerts_and_changelog_in_one_poll():
    settings = Settings()
    alerts = parse_alerts({"rules": [{"name": "vip", "kind": "visitor", "when": {"type": "page"}},
                                     {"name": "ten", "kind": "threshold", "window_s": 600, "above": 100}]})
    book = AlertBook(settings, lambda project: alerts if project == "shop" else None, PartitionMap())
    book.restoring([0])
    events = [envelope(T0, "a", type="page"), envelope(T0 + 1000, "a", type="page")]
    record = ConsumerRecord("headwater.step.index", 0, 5, 0, 0, b"shop:a", encode_batch(events), None, 0, 0,
                            [(PROJECT_HEADER, b"shop"), (SESSIONS_HEADER, orjson.dumps([["s1", 1], ["s1", 2]]))])
    other = ConsumerRecord("headwater.step.index", 0, 6, 0, 0, b"blog:a", b"not even JSON", None, 0, 0,
                           [(PROJECT_HEADER, b"blog")])
    outputs, raised = book.poll({None: [record, other]}, 10.0)
    assert raised == 1
    (alert,) = [o for o in outputs if o.topic == book.alerts]
    assert decode_batch(alert.value)[0].event["properties"]["rule"] == "vip" and alert.partition == 0
    changelog = {o.key: o.value for o in outputs if o.topic == book.changelog}
    assert orjson.loads(changelog[b"shop|n|ten"]) == [T0, T0] and b"shop|m" in changelog  # T0 starts a window
    restored = AlertBook(settings, lambda project: alerts, PartitionMap())
    restored.restoring([0])
    for key, value in changelog.items():
        restored.restore_record(0, ConsumerRecord("c", 0, 0, 0, 0, key, value, None, 0, 0, []))
    assert restored.projects["shop"].values == book.projects["shop"].values


def test_threshold_windows_are_epoch_aligned_and_hop():
    rule = parse_alerts({"rules": [{"name": "h", "kind": "threshold", "window_s": 600, "every_s": 300,
                                    "above": 1}]}).rules[0]
    assert isinstance(rule, ThresholdRule)
    assert list(rule.starts(T0 + 7 * MIN)) == [T0, T0 + 5 * MIN]


def test_rules_with_one_condition_count_once_an_event_and_each_gets_its_own_windows():
    alerts = parse_alerts({"rules": [
        {"name": "ten", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 600, "above": 100},
        {"name": "hop", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 600, "every_s": 300,
         "above": 100},
        {"name": "pages", "kind": "threshold", "when": {"type": "page"}, "window_s": 120, "above": 100}]})
    groups = {rule.name: group for group, _ in alerts.counts.always + tuple(
        entry for entries in [*alerts.counts.by_event.values(), *alerts.counts.by_type.values()] for entry in entries)
        for rule in group.rules}
    assert groups["ten"] is groups["hop"] and groups["pages"] is not groups["ten"]
    state = ProjectAlerts("shop", LIMITS)
    for minute in (0, 1, 6, 7, 7, 12):
        state.add(alerts, envelope(T0 + minute * MIN, event="Checkout"), 0, LATER)
    state.flush_counts()
    windows = {k: v for k, v in state.values.items() if k.startswith("w|")}
    # ten: [0, 10) holds minutes 0 1 6 7 7, [10, 20) minute 12; hop also [5, 15): 6 7 7 12 ([-5, 5) is
    # before its first whole window)
    assert windows == {f"w|ten|{T0}": 5, f"w|ten|{T0 + 10 * MIN}": 1,
                       f"w|hop|{T0}": 5, f"w|hop|{T0 + 5 * MIN}": 4, f"w|hop|{T0 + 10 * MIN}": 1}
    assert state.late == 0


def test_the_rule_index_and_what_is_left_to_test_agree_with_each_whole_condition():
    conditions = [{"event": "Order Completed"}, {"event": ["A", "B"]}, {"type": "page"}, {"event": "Sign*"},
                  {"all": [{"field": "properties.revenue", "gt": 10}, {"event": "Order Completed"}]},
                  {"all": [{"all": [{"type": ["page", "screen"]}, {"field": "context.page.path", "equals": "/vip"}]},
                           {"field": "userId", "exists": True}]},
                  {"any": [{"event": "A"}, {"type": "identify"}]}, {"not": {"event": "A"}}]
    alerts = parse_alerts({"rules": [{"name": f"r{i}", "kind": "event", "when": c} for i, c in enumerate(conditions)]})
    events = [{"type": "track", "event": "Order Completed", "properties": {"revenue": 50}},
              {"type": "track", "event": "Order Completed", "properties": {"revenue": 5}},
              {"event": "A"}, {"type": "track", "event": "B"}, {"type": "track", "event": "Signup"},
              {"type": "page", "context": {"page": {"path": "/vip"}}, "userId": "u"},
              {"type": "screen", "context": {"page": {"path": "/vip"}}}, {"type": "identify"}, {"type": 7},
              {"type": "track", "event": ["not", "a", "name"]}]
    for event in events:
        chosen = {rule.name for rule, test in alerts.events.candidates(event) if test(event)}
        assert chosen == {rule.name for rule in alerts.rules if rule.when(event)}, event


def test_only_the_traits_the_rules_test_are_kept_and_never_a_huge_one():
    alerts = parse_alerts({"rules": [{"name": "vip", "kind": "visitor", "when": {"any": [
        {"field": "traits.plan", "equals": "enterprise"}, {"not": {"field": "traits.email_domain", "equals": "x.com"}}]}}]})
    assert alerts.traits == {"plan", "email"}
    state = ProjectAlerts("shop", LIMITS)
    traits = {"plan": "pro", "email": "a@b.com", "avatar": "x" * 5000, "notes": "n"}
    state.add(alerts, envelope(T0, "anon", type="identify", userId="u", traits=traits), 1, LATER)
    state.add(alerts, envelope(T0, "anon", type="identify", userId="u", traits={"plan": "p" * 2000}), 2, LATER)
    assert state.values["t|u"] == state.values["t|anon"] == {"plan": "pro", "email": "a@b.com"}


def test_a_rule_added_beside_one_with_the_same_condition_starts_counting():
    one = {"name": "ten", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 600, "above": 100}
    state = ProjectAlerts("shop", LIMITS)
    state.add(parse_alerts({"rules": [one]}), envelope(T0, event="Checkout"), 0, LATER)
    both = parse_alerts({"rules": [one, {**one, "name": "twenty", "window_s": 1200}]})
    state.add(both, envelope(T0 + MIN, event="Checkout"), 0, LATER)
    state.flush_counts()
    first = -(-(T0 + MIN) // (20 * MIN)) * 20 * MIN  # its first whole window
    assert state.values["n|twenty"] == [first, first]
    assert state.values[f"w|ten|{T0}"] == 2  # counted by the group of the rules as they were, then as they are


def test_a_visitors_threshold_counts_each_visitor_once_a_window_across_polls_and_a_restart():
    alerts = parse_alerts({"rules": [{"name": "few", "kind": "threshold", "when": {"event": "Checkout"},
                                      "window_s": 600, "count": "visitors", "below": 4}]})
    state = ProjectAlerts("shop", LIMITS)
    state.last_input_s = LATER / 1000
    changes: dict = {}
    for poll in (["a", "a", "b"], ["a", "c"]):
        for i, visitor in enumerate(poll):
            state.add(alerts, envelope(T0 + i * 1000, visitor, event="Checkout"), 0, LATER)
        state.flush_counts()
        changes.update(state.take_changes())
    assert state.values[f"w|few|{T0}"] == 3
    restored = ProjectAlerts("shop", LIMITS)  # read back from what the changelog holds
    for key, value in changes.items():
        restored.values[key] = value
        restored.restored(key)
    restored.last_input_s = LATER / 1000
    restored.add(alerts, envelope(T0 + 5000, "b", event="Checkout"), 0, LATER)
    restored.add(alerts, envelope(T0 + 11 * MIN, "z", event="Page Seen"), 0, LATER)
    (alert,) = restored.close_windows(alerts, LATER, LATER / 1000)
    assert alert.event["properties"]["count"] == 3 and "3 visitors, below 4" in alert.event["properties"]["text"]
    gone = restored.take_changes()
    assert {f"u|few|{T0}|{v}" for v in "abc"} <= {k for k, v in gone.items() if v is None}  # forgotten at close
    assert check_alerts({"rules": [{"name": "x", "kind": "threshold", "count": "people", "above": 1}]}) == [
        "alerts.rules[0] (x).count must be one of events, visitors, persons"]


class Merged(NoLookups):
    """Persons as the identity role would have merged them, and a cohort's members by id."""

    def __init__(self, persons: dict[str, str], members: set[str] = frozenset()) -> None:
        self.persons = persons
        self.members = members

    def person_of(self, project_id: str, distinct_id: str) -> str:
        return self.persons.get(distinct_id, distinct_id)

    def in_cohort(self, project_id: str, cohort: str, distinct_id: str) -> bool:
        return cohort == "buyers" and distinct_id in self.members


def test_a_persons_threshold_counts_merged_ids_once_and_a_visitors_one_counts_each_id():
    alerts = parse_alerts({"rules": [
        {"name": "persons", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 600, "count": "persons",
         "above": 100},
        {"name": "ids", "kind": "threshold", "when": {"event": "Checkout"}, "window_s": 600, "count": "visitors",
         "above": 100}]})
    state = ProjectAlerts("shop", LIMITS, Merged({"phone-of-ann": "ann", "laptop-of-ann": "ann"}))
    for visitor in ("phone-of-ann", "laptop-of-ann", "ann", "bob", "bob"):
        state.add(alerts, envelope(T0, visitor, event="Checkout"), 0, LATER)
    state.flush_counts()
    assert state.values[f"w|persons|{T0}"] == 2 and state.values[f"w|ids|{T0}"] == 4
    assert f"u|persons|{T0}|ann" in state.values and f"u|persons|{T0}|phone-of-ann" not in state.values


def test_a_visitor_rule_with_a_cohort_fires_for_its_members_only_and_names_the_person():
    alerts = parse_alerts({"rules": [{"name": "buyer-back", "kind": "visitor", "cohort": "buyers"}]})
    state = ProjectAlerts("shop", LIMITS, Merged({"phone-of-ann": "ann"}, members={"phone-of-ann"}))
    (alert,) = state.add(alerts, envelope(T0, "phone-of-ann", type="page"), 1, LATER)
    assert alert.event["properties"]["subject"] == "ann" and alert.event["properties"]["visitor"] == "phone-of-ann"
    assert state.add(alerts, envelope(T0, "stranger", type="page"), 1, LATER) == []
    assert ProjectAlerts("shop", LIMITS).add(alerts, envelope(T0, "phone-of-ann", type="page"), 1, LATER) == []


def test_a_person_returning_on_another_device_is_back_after_the_days_of_the_person():
    alerts = parse_alerts({"rules": [{"name": "back", "kind": "visitor", "after_days": 3}]})
    state = ProjectAlerts("shop", LIMITS, Merged({"phone-of-ann": "ann", "laptop-of-ann": "ann"}))
    assert state.add(alerts, envelope(T0, "phone-of-ann", type="page"), 1, LATER) == []  # never seen before
    day = 86_400_000
    assert state.add(alerts, envelope(T0 + day, "laptop-of-ann", type="page"), 1, LATER) == []  # the same person
    (alert,) = state.add(alerts, envelope(T0 + 5 * day, "phone-of-ann", type="page"), 1, LATER)
    assert "back after 4.0 days" in alert.event["properties"]["text"]


def test_a_visitor_rule_naming_a_cohort_the_project_lacks_is_refused():
    raw = {"rules": [{"name": "b", "kind": "visitor", "cohort": "buyers"}, {"name": "c", "kind": "visitor",
                                                                            "cohort": 7}]}
    assert check_alerts(raw, [{"name": "buyers", "rules": []}]) == [
        "alerts.rules[1] (c).cohort must be the name of one of the project's cohorts"]
    assert check_alerts({"rules": raw["rules"][:1]}, [{"name": "vips"}]) == [
        "alerts.rules (b).cohort: the project has no cohort 'buyers' (it has: vips)"]
    assert parse_alerts({"rules": raw["rules"][:1]}).cohorts == {"buyers"}


def test_a_busy_visitor_writes_the_latest_event_once_in_ten_minutes_not_once_an_event():
    alerts = parse_alerts({"rules": [{"name": "back", "kind": "visitor", "after_days": 1}]})
    state = ProjectAlerts("shop", LIMITS)
    written = []
    for minute in range(0, 25, 1):
        state.add(alerts, envelope(T0 + minute * MIN, "v1", type="page"), minute + 1, LATER)
        written += [value for key, value in state.take_changes().items() if key == "s|v1"]
    assert written == [T0, T0 + 10 * MIN, T0 + 20 * MIN]


def test_an_id_merged_into_a_person_after_its_last_event_keeps_that_event_as_the_persons():
    alerts = parse_alerts({"rules": [{"name": "back", "kind": "visitor", "after_days": 3}]})
    lookups = Merged({})
    state = ProjectAlerts("shop", LIMITS, lookups)
    state.add(alerts, envelope(T0, "ann-laptop", type="page"), 1, LATER)  # not merged yet
    lookups.persons["ann-laptop"] = "ann"  # the identity role merges it
    (alert,) = state.add(alerts, envelope(T0 + 5 * 86_400_000, "ann-laptop", type="page"), 1, LATER)
    assert alert.event["properties"]["subject"] == "ann" and "back after 5.0 days" in alert.event["properties"]["text"]
