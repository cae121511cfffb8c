"""What each step did to each project's events, counted per record by the processes that run the steps,
and loaded by the step-counts indexer (headwater.step_counts)."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from headwater.deadletter import Rejected
from headwater.envelope import Envelope, encode_batch
from headwater.partitioning import PartitionMap
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects
from headwater.routing import encode_route
from headwater.settings import Settings
from headwater.step_counts import ROWS_PER_RECORD, StepCounts
from headwater.topics import step_counts_topic, step_topic, topic_specs
from indexer.targets import StepCountsTarget
from processors.base import transform_for
from processors.transform import Transform

SETTINGS = Settings(transforms_dir=os.environ["HEADWATER_TRANSFORMS_DIR"], step_counts_flush_s=60)
FLOW = [{"step": "transform", "name": "fan", "python": "fan_out"},
        {"step": "transform", "name": "tidy", "do": [{"drop_if": {"field": "properties.sku", "equals": "b"}}]},
        {"step": "transform", "name": "boom", "python": "explode"}, "index"]


def counted(counts: StepCounts) -> dict[tuple[str, str], list[int]]:
    return {(project, step): row for (_, project, step), row in counts.rows.items()}


def test_counts_add_up_per_minute_project_and_step_and_flush_as_rows():
    counts = StepCounts(SETTINGS)
    counts.add("shop", "validate", 10, 9, 0, 1)
    counts.add("shop", "validate", 5, 5)
    counts.add("blog", "validate", 2, 1, 1)
    assert counted(counts) == {("shop", "validate"): [15, 14, 0, 1], ("blog", "validate"): [2, 1, 1, 0]}
    assert not counts.is_due() and counts.due() == []  # the flush interval has not passed
    counts.flushed -= 61
    [record] = counts.due()
    minute = int(time.time()) // 60 * 60
    assert record.topic == step_counts_topic(SETTINGS) and record.events == 0 and record.partition == 0
    assert orjson.loads(record.value) == [[minute, "shop", "validate", 15, 14, 0, 1],
                                          [minute, "blog", "validate", 2, 1, 1, 0]]
    assert counts.rows == {} and not counts.is_due()


def test_many_rows_go_in_several_records():
    counts = StepCounts(SETTINGS)
    for n in range(ROWS_PER_RECORD + 1):
        counts.add(f"p{n}", "enrich", 1, 1)
    assert [len(orjson.loads(r.value)) for r in counts.flush()] == [ROWS_PER_RECORD, 1]


def relay_input(offset: int, route: list[str], events: list[dict]) -> ConsumerRecord:
    envelopes = [Envelope("shop", f"m{offset}-{n}", 0, "r", event) for n, event in enumerate(events)]
    return ConsumerRecord(step_topic(SETTINGS, "transform"), 0, offset, 0, 0, b"k", encode_batch(envelopes), None,
                          0, 0, encode_route(route))


def test_each_local_step_counts_what_it_took_gave_dropped_and_dead_lettered():
    step = Transform(SETTINGS, FixedProjects(Project("shop", "Shop", 0, flow=FLOW)))
    partitions, counts = PartitionMap(), StepCounts(SETTINGS)
    partitions.counts = {spec.name: 1 for spec in topic_specs(SETTINGS)}
    cart = lambda *items: {"type": "track", "event": "Cart", "properties": {"items": list(items)}}  # noqa: E731
    outputs = transform_for(step, partitions, counts=counts)([
        relay_input(0, ["transform:fan", "transform:tidy", "index"], [cart("a", "b", "c"), cart(), cart("b")]),
        relay_input(1, ["transform:boom", "index"], [cart("x"), cart("y")])])
    # fan: three carts in, one without items dropped, four line items out; tidy drops the two b's
    assert counted(counts) == {("shop", "transform:fan"): [3, 4, 1, 0], ("shop", "transform:tidy"): [4, 2, 2, 0],
                               ("shop", "transform:boom"): [2, 0, 0, 2]}
    assert sum(o.events for o in outputs if not o.dead) == 2 and sum(o.dead for o in outputs) == 2


class Known:
    def get(self, project_id: str) -> Project | None:
        return Project(project_id, project_id, 0) if project_id == "shop" else None


def test_the_indexer_loads_the_rows_of_known_projects_and_refuses_a_malformed_record():
    target = StepCountsTarget(SETTINGS, Known())  # type: ignore[arg-type]
    value = orjson.dumps([[1_780_000_020, "shop", "validate", 3, 2, 0, 1], [1_780_000_020, "gone", "enrich", 1, 1, 0, 0]])
    [(project, item)] = target.items(ConsumerRecord("t", 0, 5, 0, 0, None, value, None, 0, 0, []))
    assert project == "shop" and item.events == 1
    [(minute, step, *figures)] = item.rows
    assert (minute.timestamp(), step, figures) == (1_780_000_020, "validate", [3, 2, 0, 1])
    for bad in (b"{", b"[[1, 2]]", b'[[1, "shop", "validate", 1, 2]]', b'[[1, "shop", 7, 1, 1, 0, 0]]'):
        with pytest.raises(Rejected):
            target.items(ConsumerRecord("t", 0, 6, 0, 0, None, bad, None, 0, 0, []))
