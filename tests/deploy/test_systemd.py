"""deploy/systemd: templated gateway and worker units (several per host, the instance name their
port), a migration unit, and an environment file of known settings. systemd-analyze verifies
the units as systemd would load them, with the installed `leadgate` in place of /opt/leadgate."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.server import SHUTDOWN_TIMEOUT
from gateway.settings import Settings
from tests.deploy.files import DEPLOY, names_in, setting_names

UNITS = DEPLOY / "systemd"
INSTALL_PREFIX = "/opt/leadgate"
# A template is verified as one of its instances.
INSTANCES = {
    "leadgate-gateway@.service": "leadgate-gateway@8080.service",
    "leadgate-worker@.service": "leadgate-worker@9091.service",
    "leadgate-migrate.service": "leadgate-migrate.service",
}
WORKER_DRAIN = 5  # after an attempt's timeout (workers.main's job_completion_wait)
# systemd-analyze security's exposure, 0 (locked down) to 100; these units measure about 32.
EXPOSURE_THRESHOLD = 45


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


def all_values(name: str, key: str) -> list[str]:
    """Every line of `key` in [Service] (EnvironmentFile= may repeat)."""
    lines = (UNITS / name).read_text().splitlines()
    return [line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")]


@pytest.fixture
def installed_units(tmp_path: Path) -> Path:
    """The units as a host would have them, /opt/leadgate being this environment."""
    prefix = str(Path(sys.executable).parent.parent)
    for template, instance in INSTANCES.items():
        text = (UNITS / template).read_text().replace(INSTALL_PREFIX, prefix)
        (tmp_path / instance).write_text(text)
    return tmp_path


def test_the_units_are_the_ones_the_readme_names() -> None:
    assert {p.name for p in UNITS.glob("*.service")} == set(INSTANCES)
    readme = (DEPLOY / "README.md").read_text()
    assert all(name in readme for name in [*INSTANCES, "leadgate.env.example"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_systemd_analyze_verifies_every_unit(installed_units: Path) -> None:
    units = [str(installed_units / name) for name in INSTANCES.values()]
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
@pytest.mark.parametrize("name", ["leadgate-gateway@.service", "leadgate-worker@.service"])
def test_the_long_running_units_are_locked_down(installed_units: Path, name: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}",
         str(installed_units / INSTANCES[name])],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr


def test_each_unit_runs_its_leadgate_command_as_the_leadgate_user() -> None:
    commands = {"leadgate-gateway@.service": "serve", "leadgate-worker@.service": "worker",
                "leadgate-migrate.service": "migrate"}  # fmt: skip
    for name, command in commands.items():
        unit = service(name)
        assert unit["ExecStart"] == f"{INSTALL_PREFIX}/bin/leadgate {command}"
        assert (unit["User"], unit["Group"]) == ("leadgate", "leadgate")
        assert all_values(name, "EnvironmentFile")[0] == "/etc/leadgate/leadgate.env"


def test_instances_listen_on_the_port_they_are_named_for() -> None:
    assert "LEADGATE_PORT=%i" in all_values("leadgate-gateway@.service", "Environment")
    worker = all_values("leadgate-worker@.service", "Environment")
    assert "LEADGATE_WORKER_METRICS_PORT=%i" in worker
    for name in ("leadgate-gateway@.service", "leadgate-worker@.service"):
        files = all_values(name, "EnvironmentFile")
        assert len(files) == 2 and files[1].startswith("-") and "%i" in files[1]


def test_gateways_and_workers_start_on_a_current_schema_and_drain_on_stop() -> None:
    timeout = Settings().delivery_timeout
    stops = {
        "leadgate-gateway@.service": SHUTDOWN_TIMEOUT,
        "leadgate-worker@.service": timeout + WORKER_DRAIN,
    }
    for name, drain in stops.items():
        unit = service(name)
        assert unit["ExecStartPre"] == f"{INSTALL_PREFIX}/bin/leadgate migrate --check"
        assert float(unit["TimeoutStopSec"]) > drain
        assert unit["KillSignal"] == "SIGTERM"
        assert unit["Restart"] == "on-failure"


def test_every_leadgate_name_in_the_units_and_the_environment_file_is_a_setting() -> None:
    text = " ".join(p.read_text() for p in UNITS.iterdir())
    assert names_in(text) - setting_names() == set()
    example = (UNITS / "leadgate.env.example").read_text().splitlines()
    assigned = {line.split("=", 1)[0] for line in example if line and not line.startswith("#")}
    assert {"LEADGATE_DATABASE_URL", "LEADGATE_REDIS_URL", "LEADGATE_SECRET_KEYS"} <= assigned
