"""Schemathesis against the served OpenAPI document on the running collector: no 5xx, and every
response matches the document (status codes, content types, headers, bodies).

Batch endpoints accept the valid events of a partly invalid batch (a documented choice), so for them
the check that schema-violating input is refused whole is left out. The check that schema-valid input
is accepted is left out everywhere: an event time more than ``max_event_age_days`` before its receipt
is refused (400 ``too_old``, docs/collector.md), a bound relative to now that a JSON Schema cannot
state. Every other check runs. The
"coverage" phase is skipped: schemathesis 4.32 sometimes crashes inside its own generator there (a
SystemError from Python 3.11's ast module, "AST constructor recursion depth mismatch", while it
describes a Hypothesis strategy), first seen with the nested batch schema and later on the
single-event endpoints in the full suite, which says nothing about the collector.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
BATCH_PATHS = "^/v1/(batch|b|hw)$"


def schemathesis(stack, settings, *args: str, examples: int = 25) -> tuple[int, str]:
    argv = [str(Path(sys.executable).with_name("schemathesis")), "run", stack.collector_url + "/openapi.json",
            "-a", f"{settings.default_write_key}:", "--max-examples", str(examples), "--seed", "1", "-w", "2",
            "--no-color", "--request-timeout", "10", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def generated(output: str) -> int:
    match = re.search(r"(\d+) generated", output)
    return int(match.group(1)) if match else 0


def test_single_event_endpoints_conform(stack, settings):
    code, output = schemathesis(stack, settings, "--checks", "all", "--exclude-checks", "positive_data_acceptance",
                                "--exclude-path-regex", BATCH_PATHS,
                                "--phases", "examples,fuzzing,stateful", examples=60)
    print(f"schemathesis: {generated(output)} cases on the single-event endpoints")
    assert code == 0, output[-6000:]
    assert generated(output) > 800


def test_batch_endpoints_conform(stack, settings):
    code, output = schemathesis(stack, settings, "--checks", "all", "--exclude-checks", "negative_data_rejection,positive_data_acceptance",
                                "--include-path-regex", BATCH_PATHS, "--phases", "examples,fuzzing")
    print(f"schemathesis: {generated(output)} cases on the batch endpoints")
    assert code == 0, output[-6000:]
    assert generated(output) > 30
