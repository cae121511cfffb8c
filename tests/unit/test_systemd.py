"""The bare-metal units: one per role, checked offline by systemd's own tools (`systemd-analyze verify`
and `security --offline`), with the environment file's placeholder secrets refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from commands.roles import service_roles
from commands.systemd import ENVIRONMENT_FILE, EXECUTABLE, SYSTEMD_DIR, rendered_units, unit_name
from headwater.settings import load_settings

pytestmark = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
UNITS = rendered_units()


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The units as they would be installed, pointing at this checkout's executable and an empty
    environment file (verify checks that both exist)."""
    where = tmp_path_factory.mktemp("units")
    (where / "headwater.env").write_text("")
    headwater = str(Path(sys.executable).with_name("headwater"))
    for path, text in UNITS.items():
        (where / path.name).write_text(text.replace(EXECUTABLE, headwater).replace(ENVIRONMENT_FILE,
                                                                                   str(where / "headwater.env")))
    return where


def test_a_unit_per_role_under_one_target():
    names = {path.name for path in UNITS}
    roles = {unit_name(role) for role, _ in service_roles(colocate_stateless_steps=True)}
    assert roles | {"headwater-migrate.service", "headwater.target"} == names
    assert all(path.parent == SYSTEMD_DIR for path in UNITS)
    target = UNITS[SYSTEMD_DIR / "headwater.target"]
    assert all(name in target for name in roles)


def test_systemd_verifies_every_unit_without_a_warning(installed):
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(installed / path.name) for path in UNITS)],
                          capture_output=True, text=True, cwd=installed)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_every_unit_is_sandboxed(installed):
    for unit in sorted(installed.glob("*.service")):
        done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
                              capture_output=True, text=True, cwd=installed)
        exposure = float(done.stdout.rsplit("exposure level for", 1)[1].split(":")[1].split()[0])
        assert done.returncode == 0 and exposure <= 2.0, (unit.name, exposure)


def test_the_sessionizer_keeps_its_transactional_id_across_restarts():
    unit = UNITS[SYSTEMD_DIR / "headwater-sessionize.service"]
    assert "Environment=HEADWATER_INSTANCE_ID=%H-processor-sessionize\n" in unit  # the host's name, not a pid


def test_consuming_roles_get_distinct_metrics_ports():
    ports = [line.split("=")[-1] for text in UNITS.values() for line in text.splitlines()
             if line.startswith("Environment=HEADWATER_METRICS_PORT=")]
    assert len(ports) == len(set(ports)) == 10  # mediator, processors, sessionize, three indexers, forwarder, identity, alerts, lag exporter


def test_the_environment_files_secrets_are_refused_until_changed():
    lines = (SYSTEMD_DIR / "headwater.env.example").read_text().splitlines()
    environment = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    with pytest.raises(ValueError, match="CHANGE-ME"):
        load_settings(environment)
    real = {name: ("x" * 40 if "CHANGE-ME" in value else value) for name, value in environment.items()}
    assert load_settings(real).trusted_proxies == "127.0.0.1/32,::1/128"
