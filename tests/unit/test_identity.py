"""Identity: the merge rules (identity.graph), the changelog format (headwater.identity) and what a poll
of the identity role writes (identity.book)."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.identity import Link, is_illegal, record_key, split_key
from headwater.partitioning import PartitionMap
from headwater.settings import Settings
from identity import remerge
from identity.book import IdentityBook
from identity.graph import (
    ALREADY_IDENTIFIED,
    ILLEGAL_ID,
    TOO_MANY_IDS,
    IdentityOptions,
    MergeRefused,
    ProjectGraph,
    check_identity,
)

DEFAULTS = IdentityOptions()


def persons(graph: ProjectGraph, *ids: str) -> set[str]:
    return {graph.person_of(i) for i in ids}


@pytest.mark.parametrize("bad", ["", "  ", "null", " null ", "Anonymous", "undefined", "0", "[object Object]", "'null'",
                                 '"guest"', "distinct_id", "NaN", "None"])
def test_placeholder_ids_are_illegal(bad):
    assert is_illegal(bad)


@pytest.mark.parametrize("good", ["u-1", "alice@example.com", "00", "nan-1", "NULL", "anonymous-42"])
def test_real_ids_are_legal(good):
    assert not is_illegal(good)


def test_identify_links_the_anonymous_id_to_the_user_and_a_second_device_joins_the_same_person():
    graph = ProjectGraph()
    first = graph.merge("u1", "anon-laptop", 1, DEFAULTS)
    assert first == {"u1": Link("u1", True, 1, 1), "anon-laptop": Link("u1", False, 1, 1)}
    second = graph.merge("u1", "anon-phone", 2, DEFAULTS)
    assert second == {"anon-phone": Link("u1", False, 2, 2)}  # the user's own link does not change again
    assert persons(graph, "u1", "anon-laptop", "anon-phone") == {"u1"}
    assert graph.person_of("someone-else") == "someone-else"


def test_a_merge_moves_every_id_of_the_other_person_with_one_version():
    graph = ProjectGraph()
    graph.merge("u1", "a1", 1, DEFAULTS)
    graph.merge("u2", "a2", 2, DEFAULTS)
    graph.merge("u2", "a3", 3, DEFAULTS)
    changed = graph.merge("u1", "u2", 4, IdentityOptions(merge_identified=True))  # an alias u2 -> u1
    assert set(changed) == {"u2", "a2", "a3"} and {link.version for link in changed.values()} == {4}
    assert persons(graph, "u1", "a1", "u2", "a2", "a3") == {"u1"}
    assert graph.members == {"u1": {"u1", "a1", "u2", "a2", "a3"}}


def test_a_shared_device_does_not_merge_a_second_user_but_an_alias_does():
    graph = ProjectGraph()
    graph.merge("alice", "tablet", 1, DEFAULTS)
    with pytest.raises(MergeRefused) as refused:
        graph.merge("carol", "tablet", 2, DEFAULTS)  # carol logs in on alice's tablet
    assert refused.value.kind == ALREADY_IDENTIFIED and "carol" not in graph.links
    graph.merge("alice-new", "alice", 3, DEFAULTS, explicit=True)  # alice's new user id
    assert persons(graph, "alice", "alice-new", "tablet") == {"alice"}


def test_two_identified_persons_are_not_merged_unless_the_project_opts_in():
    graph = ProjectGraph()
    graph.merge("alice", "anon-1", 1, DEFAULTS)
    graph.merge("bob", "anon-2", 2, DEFAULTS)
    with pytest.raises(MergeRefused) as refused:
        graph.merge("alice", "anon-2", 3, DEFAULTS)
    assert refused.value.kind == ALREADY_IDENTIFIED
    assert graph.person_of("anon-2") == "bob"  # a refusal changes nothing
    graph.merge("alice", "anon-2", 4, IdentityOptions(merge_identified=True))
    assert persons(graph, "alice", "bob", "anon-1", "anon-2") == {"alice"}


def test_illegal_ids_and_oversized_persons_are_refused():
    graph = ProjectGraph()
    for bad in ("null", "anonymous", ""):
        with pytest.raises(MergeRefused) as refused:
            graph.merge("u1", bad, 1, DEFAULTS)
        assert refused.value.kind == ILLEGAL_ID
    assert graph.links == {}
    small = IdentityOptions(max_ids=3)
    graph.merge("u1", "a1", 1, small)
    graph.merge("u1", "a2", 2, small)
    with pytest.raises(MergeRefused) as refused:
        graph.merge("u1", "a3", 3, small)
    assert refused.value.kind == TOO_MANY_IDS and graph.person_of("a3") == "a3"
    capped = IdentityOptions(max_project_ids=4)  # u1, a1, a2 and one more id in the whole project
    graph.identify("u9", 4, capped)
    for attempt in (lambda: graph.identify("u8", 5, capped), lambda: graph.merge("u1", "a4", 6, capped)):
        with pytest.raises(MergeRefused) as refused:
            attempt()
        assert refused.value.kind == TOO_MANY_IDS and "identity_max_ids_per_project" in str(refused.value)
    assert len(graph.links) == 4


def test_the_changelog_restores_the_same_graph():
    graph = ProjectGraph()
    changes = {}
    for user, other, at in (("u1", "a1", 1), ("u3", "a2", 2), ("u1", "u3", 3), ("u2", "a4", 4)):
        changes.update(graph.merge(user, other, at, IdentityOptions(merge_identified=True)))
    restored = ProjectGraph()
    for distinct_id, link in changes.items():
        restored.restore(distinct_id, Link.load(link.dump()))
    assert restored.links == graph.links and restored.members == graph.members
    assert restored.version == graph.version == 4


def test_unreadable_changelog_values_and_keys():
    with pytest.raises(ValueError):
        Link.load(b"{}")
    with pytest.raises(ValueError):
        Link.load(b"[1, 2, true, 3, 4]")
    assert split_key(record_key("shop", "a:b")) == ("shop", "a:b")


def test_identity_settings_are_checked():
    assert check_identity({}) == []
    assert check_identity({"merge_identified": True, "max_ids": 10}) == []
    assert len(check_identity({"max_ids": 1, "merge_identified": "yes", "other": 1})) == 3
    assert IdentityOptions.of({"max_ids": "x"}) == IdentityOptions()


def test_the_admin_check_refuses_bad_identity_settings():
    from commands.checks import check_project
    from headwater.projects.model import Project

    assert check_project(Project("shop", "Shop", 0, identity={"max_ids": 1})) == [
        "identity.max_ids must be a whole number from 2 to 10000"]


def stored(project: str, i: int, event: dict) -> Envelope:
    return Envelope(project, f"m{i}", 1_000 + i, "r", event)


def index_record(envelopes: list[Envelope], offset: int) -> ConsumerRecord:
    return ConsumerRecord("headwater.step.index", 0, offset, 0, 0, b"k", encode_batch(envelopes), None, 0, 0, [])


def book() -> IdentityBook:
    counts = PartitionMap()
    counts.counts = {"headwater.dead": 4, "headwater.identity": 1}
    identity = IdentityBook(Settings(), lambda project: DEFAULTS, counts)
    identity.restoring([0])
    return identity


def test_a_poll_writes_the_changed_links_and_dead_letters_the_refused_merges():
    identity = book()
    records = [
        index_record([stored("shop", 1, {"type": "page", "anonymousId": "a1"}),
                      stored("shop", 2, {"type": "identify", "userId": "u1", "anonymousId": "a1"})], 0),
        index_record([stored("shop", 3, {"type": "track", "event": "x", "anonymousId": "a2"})], 1),
        index_record([stored("shop", 4, {"type": "alias", "userId": "u1", "previousId": "a2"}),
                      stored("blog", 5, {"type": "identify", "userId": "u1", "anonymousId": "undefined"})], 2),
    ]
    outputs, changed = identity.poll({TopicPartition("headwater.step.index", 0): records}, 0.0)
    links = {o.key: orjson.loads(o.value) for o in outputs if o.topic == "headwater.identity"}
    assert changed == 3 and links == {b"shop:u1": [1, "u1", True, 1, 1002], b"shop:a1": [1, "u1", False, 1, 1002],
                                      b"shop:a2": [1, "u1", False, 2, 1004]}
    [dead] = [o for o in outputs if o.dead]
    letter = orjson.loads(dead.value)
    assert (letter["project_id"], letter["step"], letter["reason"], letter["path"]) == (
        "blog", "identity", "merge_illegal_id", "anonymousId")
    assert letter["payload"]["event"]["anonymousId"] == "undefined"
    assert "blog" not in identity.graphs or not identity.graphs["blog"].links


def test_records_without_identify_or_alias_are_not_decoded():
    identity = book()
    garbage = ConsumerRecord("headwater.step.index", 0, 0, 0, 0, b"k", b"not json at all", None, 0, 0, [])
    outputs, changed = identity.poll({TopicPartition("headwater.step.index", 0): [garbage]}, 0.0)
    assert (outputs, changed) == ([], 0)


def test_an_erase_command_forgets_every_id_of_the_person_and_writes_tombstones():
    from headwater.identity import erase_command, read_erase_command

    identity = book()
    merges = index_record([stored("shop", 1, {"type": "identify", "userId": "u1", "anonymousId": "a1"}),
                           stored("shop", 2, {"type": "alias", "userId": "u1", "previousId": "a2"}),
                           stored("shop", 3, {"type": "identify", "userId": "u2", "anonymousId": "b1"})], 0)
    identity.poll({TopicPartition("headwater.step.index", 0): [merges]}, 0.0)
    command = ConsumerRecord("headwater.identity-commands", 0, 0, 0, 0, None, erase_command("shop", ["a2"]), None,
                             0, 0, [])
    outputs, changed = identity.poll({TopicPartition("headwater.identity-commands", 0): [command]}, 0.0)
    assert changed == 3 and {o.key: o.value for o in outputs} == {b"shop:u1": None, b"shop:a1": None, b"shop:a2": None}
    assert set(identity.graphs["shop"].links) == {"u2", "b1"}
    with pytest.raises(ValueError):
        read_erase_command(b'{"erase": {"project_id": "shop", "ids": [1]}}')


def test_a_remerge_is_cut_into_records_under_the_byte_limit_and_reads_back_as_stored_events():
    calls = [Envelope("shop", f"m{i:02d}", i, remerge.REQUEST_ID, {"type": "identify", "userId": f"user-{i:02d}",
                                                               "anonymousId": "x" * 200}) for i in range(10, 60)]
    one = len(encode_batch(calls[:1]))
    records = list(remerge.batches(iter(calls), limit_bytes=one * 10))
    assert [count for _, count in records] == [10, 10, 10, 10, 10]
    assert all(len(value) <= one * 10 for value, _ in records)
    assert [e.message_id for value, _ in records for e in decode_batch(value)] == [c.message_id for c in calls]
    assert list(remerge.batches(iter([]))) == []
    huge = Envelope("shop", "big", 0, remerge.REQUEST_ID, {"type": "identify", "userId": "u" * 5000})
    assert [count for _, count in remerge.batches(iter([huge, *calls[:2]]), limit_bytes=one * 2)] == [1, 2]
