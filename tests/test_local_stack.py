"""The local servers stop cleanly and start again on the same data, and the pipeline carries on."""

from __future__ import annotations

import uuid

import pytest

from headwater.clickhouse import make_client
from tests.helpers import post, wait_for

pytestmark = pytest.mark.integration


def send_and_wait(stack, settings, marker: str) -> None:
    body = {"event": marker, "anonymousId": "restart", "messageId": marker}

    def accepted():
        return post(stack.collector_url, "/v1/track", body, settings.default_write_key).status_code == 200

    wait_for(accepted, timeout_s=60, interval_s=1)
    client = make_client(settings)
    query = f"SELECT count() FROM hw_default.events WHERE message_id = '{marker}'"
    wait_for(lambda: client.execute(query)[0][0] >= 1, timeout_s=60)
    client.disconnect()


def test_kafka_and_clickhouse_restart_on_their_own_data(stack, settings):
    before = f"before-{uuid.uuid4()}"
    send_and_wait(stack, settings, before)

    # Both stop by themselves on SIGTERM within the grace period (a SIGKILL would give a negative code).
    # The chdb engine sometimes exits with 1 rather than 0 once its keep-alive query is killed.
    assert stack.restart("kafka") in (0, 143), stack.kafka.log_tail()
    assert stack.restart("clickhouse") in (0, 1), stack.clickhouse.log_tail()

    after = f"after-{uuid.uuid4()}"
    send_and_wait(stack, settings, after)

    client = make_client(settings)
    counts = dict(client.execute(
        "SELECT message_id, count() FROM hw_default.events WHERE message_id IN %(ids)s GROUP BY message_id",
        {"ids": [before, after]},
    ))
    client.disconnect()
    # The event from before is still there, and it was not processed again: offsets survived too.
    assert counts == {before: 1, after: 1}



def test_kafka_down_means_503_within_the_bound_and_never_200(stack, settings):
    import concurrent.futures
    import time

    import httpx

    bound_s = settings.produce_timeout_s + 1.5
    stack.kafka.stop()
    try:
        def attempt(n: int) -> tuple[int, float, str | None]:
            started = time.monotonic()
            reply = post(stack.collector_url, "/v1/track", {"event": "down", "anonymousId": f"v{n}"},
                         settings.default_write_key)
            return reply.status_code, time.monotonic() - started, reply.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(attempt, range(16)))
        assert {status for status, _, _ in results} == {503}
        assert max(seconds for _, seconds, _ in results) < bound_s
        assert all(retry_after for _, _, retry_after in results)
        assert httpx.get(stack.collector_url + "/readyz", timeout=10).status_code == 503
    finally:
        stack.kafka.start(stack.env)
        wait_for(stack.kafka_ready, timeout_s=120)
    send_and_wait(stack, settings, f"recovered-{uuid.uuid4()}")
