"""Malformed events sent through the whole pipeline land in failed_events, never in events."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz_cases import CASES
from tests.helpers import Admin, post, wait_for
from tests.unit.test_fuzz_parsers import malformed


@pytest.mark.integration
@settings(max_examples=1, deadline=None, database=None)
@given(data=st.data())
def test_malformed_events_land_in_failed_events_never_in_events(stack, clickhouse, data):
    created = Admin(stack.settings).create_project(prefix="fuzz")
    project_id, key = created["project"]["id"], created["keys"]["public_key"]
    reply = Admin(stack.settings).call("POST", f"/v1/projects/{project_id}/schemas", {
        "event": "Signed Up", "version": "1-0-0",
        "schema": {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}})
    assert reply.status_code == 201
    events = data.draw(st.lists(malformed, min_size=150, max_size=150))
    for event in events:
        event["messageId"] = f"fuzz-{uuid.uuid4()}"
    CASES["end to end: malformed events through the pipeline"] = len(events)
    assert post(stack.collector_url, "/v1/batch", {"batch": events}, key).status_code == 200
    db = f"hw_{project_id}"
    wait_for(lambda: clickhouse.execute(f"SELECT count() FROM {db}.failed_events")[0][0] >= len(events), 90)
    failed = clickhouse.execute(f"SELECT message_id, reason FROM {db}.failed_events")
    assert sorted(m for m, _ in failed) == sorted(e["messageId"] for e in events)
    assert {reason for _, reason in failed} == {"schema_violation"}
    assert clickhouse.execute(f"SELECT count() FROM {db}.events")[0][0] == 0
    # a flood of bad events from one sender raises the alarm but does not stop the step for everyone
    assert stack.child(stack.role_of("validate")).alive()
