"""Events in and out of each step of each project's flow, a minute at a time: what the Flow page
draws, and what operators query (``step_counts`` in each project's database, see docs/schema.md).

Every process that runs a step (the mediator, the processors) adds what each poll did to its
:class:`StepCounts`, and produces them to the step-counts topic with a poll's outputs every
``step_counts_flush_s``: a relay also when idle and when it stops, the sessionizer in its
transactions. The ``step_counts`` indexer loads that topic.

Delivery: counts are produced like the step's own outputs, so at least once. A poll read again after
a crash is counted again, and a process killed (or a sessionizer stopped) loses what it counted since
its last flush. Minutes are processing time (when the step ran), not the events' own time. Counting costs a
few dictionary operations per Kafka record, none per event.
"""

from __future__ import annotations

import time

import orjson

from headwater.relay_types import Output
from headwater.settings import Settings
from headwater.topics import step_counts_topic

ROWS_PER_RECORD = 2000  # ~100 bytes each: well under a record's limit
COUNT_FIELDS = ("events_in", "events_out", "dropped", "dead_lettered")


class StepCounts:
    """What the steps of one process did, per (minute, project, step), since the last flush."""

    def __init__(self, settings: Settings) -> None:
        self.topic = step_counts_topic(settings)
        self.every_s = settings.step_counts_flush_s
        self.rows: dict[tuple[int, str, str], list[int]] = {}
        self.flushed = time.monotonic()

    def add(self, project_id: str, step: str, events_in: int, events_out: int, dropped: int = 0,
            dead_lettered: int = 0) -> None:
        """Count what ``step`` (its slip name, or ``mediator``) did to some of ``project_id``'s events:
        every event in comes out, is dropped or is dead-lettered (a split gives more out than in)."""
        key = (int(time.time()) // 60 * 60, project_id, step)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [events_in, events_out, dropped, dead_lettered]
        else:
            row[0] += events_in
            row[1] += events_out
            row[2] += dropped
            row[3] += dead_lettered

    def is_due(self) -> bool:
        """Whether there are counts and ``step_counts_flush_s`` has passed since the last flush."""
        return bool(self.rows) and time.monotonic() - self.flushed >= self.every_s

    def due(self) -> list[Output]:
        """The records to produce now: everything counted, once it :meth:`is_due`."""
        return self.flush() if self.is_due() else []

    def flush(self) -> list[Output]:
        """Everything counted, as records of rows ``[minute (epoch s), project, step, in, out, dropped,
        dead-lettered]``; the counts start again from zero."""
        rows = [[minute, project, step, *counts] for (minute, project, step), counts in self.rows.items()]
        self.rows, self.flushed = {}, time.monotonic()
        return [Output(self.topic, None, orjson.dumps(rows[start:start + ROWS_PER_RECORD]), [], events=0,
                       partition=0)
                for start in range(0, len(rows), ROWS_PER_RECORD)]
