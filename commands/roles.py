"""The one list of the roles a deployment runs, with their command lines: read by the local stack
(``make up``, the tests, the benchmarks) and by ``headwater deploy render`` (Compose and Helm)."""

from __future__ import annotations

from headwater.flow import PROCESSOR_STEPS, STATEFUL_STEPS

COLOCATED = "processors"  # the role running every stateless step, with colocate_stateless_steps
DEPLOYMENT_TARGETS = ("compose", "helm", "grafana", "systemd", "monitoring")  # what `headwater deploy render` writes


def service_roles(colocate_stateless_steps: bool = False) -> list[tuple[str, list[str]]]:
    """Every Headwater role that ``make up`` runs, with its command line: one process per step, or the
    stateless steps in one process (``COLOCATED``) and the sessionizer in another."""
    processors = [(f"processor-{step}", ["processor", step]) for step in PROCESSOR_STEPS]
    if colocate_stateless_steps:
        stateless = [step for step in PROCESSOR_STEPS if step not in STATEFUL_STEPS]
        stateful = [(f"processor-{step}", ["processor", step]) for step in PROCESSOR_STEPS if step in STATEFUL_STEPS]
        processors = [(COLOCATED, ["processor", *stateless]), *stateful]
    return [("collector", ["collector"]), ("admin", ["admin"]), ("dashboard", ["dashboard"]),
            ("mediator", ["mediator"]),
            *processors,
            ("indexer", ["indexer", "events"]), ("indexer-sessions", ["indexer", "sessions"]),
            ("indexer-failed", ["indexer", "failed_events", "step_counts", "person_ids", "alerts"]),
            ("forwarder", ["forwarder"]), ("identity", ["identity"]), ("alerts", ["alerts"]),
            ("lag-exporter", ["lag-exporter"])]
