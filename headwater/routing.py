"""The routing slip: each message carries the steps it still has to visit.

The mediator writes the slip (the project's flow) into the ``hw-route`` header and sends the event to
the first step's topic. Each processor pops its own step and forwards the event to the next one, so
events never travel back to the mediator. See docs/architecture.md for the reasoning.
"""

from __future__ import annotations

ROUTE_HEADER = "hw-route"
PROJECT_HEADER = "hw-project"  # set by the collector, so routing needs no body decode
EVENTS_HEADER = "hw-events"  # how many events the record holds, so counting needs no decode either
# On records for the sessionizer: what it reads of each event, so it does not decode the events
VISITS_HEADER = "hw-visits"
# On records from the sessionizer: each event's [session id, seq], when the events were passed on as they came
SESSIONS_HEADER = "hw-sessions"
Headers = list[tuple[str, bytes]]


def header_value(headers: Headers | tuple | None, name: str) -> bytes | None:
    for key, value in headers or ():
        if key == name:
            return value
    return None


def event_count(headers: Headers | tuple | None) -> int:
    value = header_value(headers, EVENTS_HEADER)
    return int(value) if value and value.isdigit() else 0


def encode_route(steps: tuple[str, ...] | list[str]) -> Headers:
    return [(ROUTE_HEADER, ",".join(steps).encode())]


def read_route(headers: Headers | tuple | None) -> list[str]:
    value = header_value(headers, ROUTE_HEADER)
    return value.decode().split(",") if value else []


def step_kind(slip_name: str) -> str:
    """The step that runs a slip's entry: ``transform`` for a project's transform ``transform:NAME``."""
    return slip_name.partition(":")[0]


def route_from(headers: Headers | tuple | None, current: str) -> tuple[str, ...]:
    """The slip, whose first entry is run by step ``current`` and which goes on after it.

    Raises ``ValueError`` when the slip is missing or does not name ``current`` first.
    """
    route = read_route(headers)
    if len(route) < 2 or step_kind(route[0]) != current:
        raise ValueError(f"routing slip {route!r} does not continue from step {current!r}")
    return tuple(route)


def remaining_route(headers: Headers | tuple | None, current: str) -> tuple[str, ...]:
    """The steps after ``current``: the next one first. The output record carries them as its slip."""
    return route_from(headers, current)[1:]
