"""What a team running Headwater for real relies on before the first event: the licence, the version,
and the refusal to start with an example's placeholder secrets."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from headwater.settings import SECRET_SETTINGS, load_settings

ROOT = Path(__file__).resolve().parents[2]
HEADWATER = Path(sys.executable).with_name("headwater")


def env_example() -> dict[str, str]:
    """Every variable the example sets, and every optional one it shows commented out (# NAME=value)."""
    text = (ROOT / "deploy" / "compose" / ".env.example").read_text()
    return {name: value.strip() for name, value in re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=(.*)$", text, re.M)}


# where each secret setting gets its value in the Compose file (deploy/compose/compose.yaml)
COMPOSE_SOURCE = {"secret_key": "HEADWATER_SECRET_KEY", "admin_token": "HEADWATER_ADMIN_TOKEN",
                  "clickhouse_password": "CLICKHOUSE_PASSWORD", "kafka_sasl_password": "KAFKA_PIPELINE_PASSWORD",
                  "smtp_password": "HEADWATER_SMTP_PASSWORD"}


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_every_example_secret_is_refused_with_its_name(name):
    example = env_example()[COMPOSE_SOURCE[name]]
    with pytest.raises(ValueError, match=f"setting {name} .*CHANGE-ME"):
        load_settings({f"HEADWATER_{name.upper()}": example})


def test_a_real_secret_is_accepted():
    settings = load_settings({"HEADWATER_SECRET_KEY": "a" * 64, "HEADWATER_ADMIN_TOKEN": "s3cr3t-token"})
    assert settings.admin_token == "s3cr3t-token"


def test_a_role_with_a_placeholder_exits_with_the_reason_not_a_traceback():
    env = {**os.environ, "HEADWATER_ADMIN_TOKEN": env_example()["HEADWATER_ADMIN_TOKEN"]}
    result = subprocess.run([str(HEADWATER), "admin"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "headwater admin: setting admin_token (HEADWATER_ADMIN_TOKEN)" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_is_the_installed_distributions():
    result = subprocess.run([str(HEADWATER), "--version"], capture_output=True, text=True, timeout=60)
    from importlib.metadata import version

    assert result.returncode == 0 and result.stdout.strip() == f"headwater {version('headwater')}"


def test_the_licence_is_apache_2_and_declared():
    from importlib.metadata import metadata

    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]
    assert "Version 2.0" in (ROOT / "LICENSE").read_text()[:200]
    assert metadata("headwater")["License-Expression"] == "Apache-2.0"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_livez_fails_while_the_event_loop_is_stuck_and_metrics_still_answer():
    import asyncio
    import threading
    import time
    import urllib.error
    import urllib.request

    from prometheus_client import CollectorRegistry, Counter

    from headwater.metrics import Heartbeat, metrics_and_liveness, serve_in_thread

    settings = load_settings({"HEADWATER_METRICS_PORT": str(free_port()), "HEADWATER_LIVENESS_STALL_S": "1.5"})
    registry = CollectorRegistry()
    Counter("probe_events", "a metric", registry=registry).inc()
    heartbeat, stopping = Heartbeat(), asyncio.Event()
    serve_in_thread(settings, metrics_and_liveness(registry, heartbeat, settings.liveness_stall_s))
    beating = asyncio.create_task(heartbeat.run(stopping))
    base = f"http://127.0.0.1:{settings.metrics_port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    await asyncio.sleep(0.1)
    assert (await asyncio.to_thread(get, "/livez"))[0] == 200
    during: dict = {}
    probe = threading.Timer(2.5, lambda: during.update(livez=get("/livez"), metrics=get("/metrics")))
    probe.start()
    time.sleep(3.0)  # the loop is stuck: no beat for longer than liveness_stall_s
    probe.join()
    assert during["livez"][0] == 503 and "stalled" in during["livez"][1]
    assert during["metrics"][0] == 200 and "probe_events_total 1.0" in during["metrics"][1]
    await asyncio.sleep(1.2)  # the loop turns again: alive
    assert (await asyncio.to_thread(get, "/livez"))[0] == 200
    stopping.set()
    await beating
