"""The alerts role's state: every project's :class:`alerts.state.ProjectAlerts`, made durable by
:class:`headwater.stateful.TransactionalLoop` in the compacted topic ``headwater.alerts-state``.

A poll reads the stored events (``headwater.step.index``: after the privacy policy, the
transformations and sessionisation), skips the records of projects without rules on their project
header, and hands each event of the others to its project's rules; then it closes the threshold
windows the watermark has passed. Out come the alerts (``headwater.alerts``) and a changelog record
for each state key that changed (a tombstone for one that went), written in the poll's transaction
with its input offsets. A poll without records still closes windows, at most once a second.

The state is one map per project, not per input partition: a threshold counts the events of every
partition. So the role has one writer, as the identity role: its transactional id is the same for
every replica, and a replica that starts fences the one before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import structlog
from aiokafka.structs import ConsumerRecord

from alerts.state import Limits, Lookups, NoLookups, ProjectAlerts
from headwater.alerts import Alerts
from headwater.envelope import Envelope, decode_batch, encode_batch
from headwater.partitioning import PartitionMap
from headwater.relay_types import Output
from headwater.routing import EVENTS_HEADER, PROJECT_HEADER, SESSIONS_HEADER, header_value
from headwater.settings import Settings
from headwater.stateful import Batch, OneWriterState
from headwater.step_counts import StepCounts
from headwater.topics import alerts_state_topic, alerts_topic

log = structlog.get_logger()

NAME = "alerts"
TICK_S = 1.0  # how often a poll without records closes windows


def _seqs(record: ConsumerRecord, envelopes: list[Envelope]) -> list[int]:
    """Each event's place in its session (1: it started one), from the sessionizer's header or the event."""
    raw = header_value(record.headers, SESSIONS_HEADER)
    if raw:
        try:
            sessions = orjson.loads(raw)
            if isinstance(sessions, list) and len(sessions) == len(envelopes):
                return [s[1] if isinstance(s, list) and len(s) == 2 and isinstance(s[1], int) else 0 for s in sessions]
        except orjson.JSONDecodeError:
            pass
    return [int((e.enriched.get("session") or {}).get("seq") or 0) for e in envelopes]


class AlertBook(OneWriterState):
    """Every project's alerting state. ``rules`` gives a project's :class:`Alerts` (``None``: none);
    ``lookups``, persons and cohorts."""

    rows_metric = ("headwater_alerts_raised", "alerts raised")

    def __init__(self, settings: Settings, rules: Callable[[str], Alerts | None], counts: PartitionMap,
                 lookups: Lookups | None = None) -> None:
        self.settings = settings
        self.lookups = lookups or NoLookups()
        self.rules = rules
        self.counts = counts
        self.changelog = alerts_state_topic(settings)
        self.alerts = alerts_topic(settings)
        self.limits = Limits(int(settings.alerts_grace_s * 1000), int(settings.alerts_idle_s * 1000),
                             settings.alerts_max_keys_per_project, settings.alerts_max_per_rule_per_minute)
        self.projects: dict[str, ProjectAlerts] = {}
        self.step_counts = StepCounts(settings)  # the role is not a step of the flow: it counts nothing
        self.last_tick = 0.0
        self.raised = 0

    def clear(self) -> None:
        self.projects.clear()

    def restore_record(self, number: int, record: ConsumerRecord) -> None:
        project_id, _, key = (record.key or b"").decode(errors="replace").partition("|")
        state = self._project(project_id)
        if record.value is None:
            state.values.pop(key, None)
            return
        try:
            state.values[key] = orjson.loads(record.value)
            state.restored(key)
        except orjson.JSONDecodeError as exc:
            log.error("alerts_record_unreadable", offset=record.offset, error=str(exc))

    def _project(self, project_id: str) -> ProjectAlerts:
        state = self.projects.get(project_id)
        if state is None:
            state = self.projects[project_id] = ProjectAlerts(project_id, self.limits, self.lookups)
        return state

    def size(self, numbers: list[int]) -> int:
        return sum(len(state.values) for state in self.projects.values())

    def rows_due(self, now: float) -> bool:
        return now - self.last_tick >= TICK_S

    def summary(self) -> dict:
        return {"alerts": self.raised, "late": sum(s.late for s in self.projects.values()),
                "suppressed": sum(s.suppressed for s in self.projects.values()),
                "keys_refused": sum(s.dropped_keys for s in self.projects.values())}

    def poll(self, batch: Batch, now: float) -> tuple[list[Output], int]:
        """The alerts the poll's events raise and the windows it closes, and the changelog records of
        the state they changed; and how many alerts."""
        self.last_tick = now
        wall_s = time.time()
        now_ms = int(wall_s * 1000)
        raised: list[Envelope] = []
        for records in batch.values():
            for record in records:
                raised += self._record(record, now_ms, wall_s)
        for project_id, state in list(self.projects.items()):
            alerts = self.rules(project_id)
            if alerts is None:
                state.forget_rules(Alerts())
                continue
            raised += state.close_windows(alerts, now_ms, wall_s)
            state.forget_rules(alerts)
        self.raised += len(raised)
        outputs = [Output(self.alerts, alert.project_id.encode(), encode_batch([alert]),
                          [(PROJECT_HEADER, alert.project_id.encode()), (EVENTS_HEADER, b"1")], events=1, partition=0)
                   for alert in raised]
        for project_id, state in self.projects.items():
            outputs += [Output(self.changelog, f"{project_id}|{key}".encode(),
                               None if value is None else orjson.dumps(value), [], events=0, partition=0)
                        for key, value in state.take_changes().items()]
        return outputs, len(raised)

    def _record(self, record: ConsumerRecord, now_ms: int, wall_s: float) -> list[Envelope]:
        project = header_value(record.headers, PROJECT_HEADER)
        alerts = self.rules(project.decode(errors="replace")) if project else None
        if alerts is None or record.value is None:
            return []
        try:
            envelopes = decode_batch(record.value)
        except ValueError:
            return []  # the events indexer dead-letters what it cannot read
        raised = []
        for envelope, seq in zip(envelopes, _seqs(record, envelopes)):
            state = self._project(envelope.project_id)
            state.last_input_s = wall_s
            raised += state.add(alerts, envelope, seq, now_ms)
        return raised
