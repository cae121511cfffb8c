"""The local servers stop cleanly and start again on the same data, and the pipeline carries on."""

from __future__ import annotations

import uuid
from pathlib import Path

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


def listening_sockets() -> dict[int, set[str]]:
    """Port -> the addresses something listens on, from /proc/net/tcp and tcp6."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state != "0A":  # LISTEN
                continue
            address, port = local.split(":")
            found.setdefault(int(port, 16), set()).add(address)
    return found


# 127.0.0.1, ::1 and ::ffff:127.0.0.1 (Java binds that way), as /proc shows them
LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def test_local_servers_listen_on_loopback_only(stack, settings):
    ports = [int(settings.kafka_bootstrap.rpartition(":")[2]), settings.kafka_controller_port,
             settings.clickhouse_port, settings.admin_port, settings.collector_port,
             settings.dashboard_port,
             *(int(child.env["HEADWATER_METRICS_PORT"]) for child in stack.consuming_roles)]
    sockets = wait_for(lambda: (found := listening_sockets()) and all(found.get(p) for p in ports) and found,
                       timeout_s=60)  # consumers open their metrics port once they have joined their group
    for port in ports:
        assert sockets[port] <= LOOPBACK, f"port {port} listens on {sockets[port]}"


def test_a_web_page_cannot_reach_the_local_clickhouse(stack, settings, clickhouse):
    """The engine's local mode has no passwords and answers browsers with CORS * on its HTTP port, where a
    page at another loopback port could list the hw_* databases and run a CREATE TABLE. So it serves the
    native protocol only, which a browser cannot speak."""
    import httpx

    origin = {"Origin": "http://127.0.0.1:9999"}
    with pytest.raises(httpx.TransportError):
        httpx.post(f"http://127.0.0.1:{settings.clickhouse_http_port}/", content=b"SHOW DATABASES", headers=origin,
                   timeout=5)
    try:
        reply = httpx.post(f"http://127.0.0.1:{settings.clickhouse_port}/?query=CREATE+TABLE+default.from_a_page"
                           "+(x+UInt8)+ENGINE+=+Memory", content=b"", headers=origin, timeout=5)
        assert reply.status_code >= 400 and "access-control-allow-origin" not in reply.headers
    except httpx.TransportError:
        pass  # refused as a protocol error
    assert clickhouse.execute("EXISTS TABLE default.from_a_page") == [(0,)]


# below Linux's ephemeral range (32768-60999): a port in it can be held by any client connection of the
# running test stack when `up` binds it
UP_PORTS = {"HEADWATER_KAFKA_BOOTSTRAP": "127.0.0.1:26092", "HEADWATER_KAFKA_CONTROLLER_PORT": "26093",
            "HEADWATER_CLICKHOUSE_PORT": "26000", "HEADWATER_COLLECTOR_PORT": "26080", "HEADWATER_ADMIN_PORT": "26081",
            "HEADWATER_DASHBOARD_PORT": "26082", "HEADWATER_LOCAL_METRICS_PORT": "26400"}


def test_up_stops_everything_when_its_piped_output_breaks(tmp_path):
    """``make up 2>&1 | tee log`` and Ctrl-C: tee dies with the Ctrl-C and the next progress line raises
    BrokenPipeError; the children must still all stop and free their ports."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, **UP_PORTS, "HEADWATER_LOCAL_DIR": str(tmp_path / "up")}
    up = subprocess.Popen([sys.executable, "-m", "headwater", "up"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline, said = time.monotonic() + 240, []
        for line in iter(up.stdout.readline, b""):
            said.append(line.decode(errors="replace"))
            if b"Headwater is up" in line or time.monotonic() > deadline:
                break
        pid_file = tmp_path / "up" / "stack.json"
        # not up (a start-up failure, a child that exited at once): say what `up` said, and its children
        assert pid_file.exists(), "".join(said[-30:]) + "".join(
            f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
            for log in sorted((tmp_path / "up" / "logs").glob("*.log")))
        pids = json.loads(pid_file.read_text())
        assert len(pids) >= 10
        up.stdout.close()  # the pipe's reader is gone
        up.send_signal(signal.SIGINT)
        up.wait(180)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
    alive = [name for name, pid in pids.items() if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert alive == []
    assert not (tmp_path / "up" / "stack.json").exists()
