"""``headwater transform ...``: the installed Python transformations, and a harness that runs one
transform step on sample events, exactly as the transform step runs it, and prints what comes out."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from headwater.deadletter import Rejected
from headwater.envelope import Envelope
from headwater.flow import TRANSFORM_STEP, FlowError, parse_flow
from headwater.plugins import installed
from headwater.projects.model import Project
from headwater.projects.store import FixedProjects
from headwater.settings import Settings
from processors.transform import Transform

TEST_PROJECT = "transform-test"


class TransformTestError(ValueError):
    """The step or the sample events cannot be run."""


def listed(settings: Settings) -> dict:
    plugins, problems = installed(settings.transforms_dir)
    return {"transforms": [{"name": p.name, "version": p.version, "origin": p.origin} for p in plugins.values()],
            "problems": list(problems)}


def test_step(settings: Settings, step: str, given: object, flow: list | None = None) -> dict:
    """Each sample event's outcome through transform step ``step``: ``step`` names a transform step of
    ``flow``, or, without a flow, an installed Python transformation."""
    if flow is None:
        if step not in installed(settings.transforms_dir)[0]:
            raise TransformTestError(f"no transformation {step!r} is installed (transforms_dir or the entry points); "
                                     "give --flow to test a declarative step")
        flow = [{"step": TRANSFORM_STEP, "name": step, "python": step}, "index"]
    try:
        parsed = parse_flow(flow)
    except FlowError as exc:
        raise TransformTestError(str(exc)) from exc
    slip_name = f"{TRANSFORM_STEP}:{step}"
    if slip_name not in parsed.transforms:
        raise TransformTestError(f"the flow has no transform step {step!r}; it has "
                                 f"{', '.join(spec.name for spec in parsed.transforms.values()) or 'none'}")
    events = given if isinstance(given, list) else [given]
    if not events or not all(isinstance(event, dict) for event in events):
        raise TransformTestError("--event holds an event (a JSON object) or a list of them")
    runner = Transform(settings, FixedProjects(Project(TEST_PROJECT, TEST_PROJECT, 0, flow=flow))).bound(slip_name)
    return {"step": step, "results": [_outcome(runner, event, i) for i, event in enumerate(events)]}


def _outcome(runner, event: dict, i: int) -> dict:
    message_id = str(event.get("messageId") or f"sample-{i}")
    envelope = Envelope(TEST_PROJECT, message_id, 0, "transform-test", event)
    try:
        result = runner.process(envelope)
    except Rejected as error:
        return {"messageId": message_id, "outcome": "dead_letter", "reason": error.reason, "detail": error.detail}
    out = [] if result is None else result if isinstance(result, list) else [result]
    outcome = "dropped" if not out else "split" if len(out) > 1 else "changed"
    return {"messageId": message_id, "outcome": outcome,
            "events": [{"event": e.event, "lineage": e.enriched.get("transforms", [])} for e in out]}


def main(settings: Settings, args: argparse.Namespace) -> None:
    try:
        if args.action == "list":
            result = listed(settings)
        else:
            flow = json.loads(Path(args.flow).read_text()) if args.flow else None
            result = test_step(settings, args.step, json.loads(Path(args.event).read_text()), flow)
    except (TransformTestError, OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: {exc}") from exc
    print(json.dumps(result, indent=2, ensure_ascii=False))


def add_parser(sub) -> None:
    parser = sub.add_parser("transform", help="list the installed Python transformations, or test a step on "
                                              "sample events")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the installed Python transformations, their versions and origins")
    test = actions.add_parser("test", help="run a transform step on sample events and print what comes out")
    test.add_argument("step", help="an installed Python transformation, or (with --flow) a transform step's name")
    test.add_argument("--event", required=True, help="a JSON file with an event or a list of events")
    test.add_argument("--flow", help="a JSON file with a flow (declarative steps are tested from it)")
