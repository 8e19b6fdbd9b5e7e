"""deploy/compose.yaml: the services the docs name, each with a health check, started in order
(Postgres and Redis healthy, then the migration done, then gateways and workers), on the image
deploy/Dockerfile builds, with settings Leadgate knows."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from gateway.server import SHUTDOWN_TIMEOUT
from gateway.settings import Settings
from tests.deploy.files import (
    DEPLOY,
    DOCKERFILE,
    dockerfile,
    healthcheck_command,
    names_in,
    setting_names,
)

COMPOSE = DEPLOY / "compose.yaml"
SPEC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
SERVICES: dict[str, dict[str, Any]] = SPEC["services"]
GATEWAYS = ["gateway-1", "gateway-2"]
WORKERS = ["worker-1", "worker-2"]
LEADGATE = ["migrate", *GATEWAYS, *WORKERS]
AFTER_MIGRATION = {
    "postgres": "service_healthy",
    "redis": "service_healthy",
    "migrate": "service_completed_successfully",
}
# Drain after an attempt's timeout (workers.main's job_completion_wait).
WORKER_DRAIN = 5


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def test_the_services_are_the_ones_the_docs_name() -> None:
    assert set(SERVICES) == {"postgres", "redis", *LEADGATE}
    readme = (DEPLOY / "README.md").read_text()
    for name in SERVICES:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_health_check(name: str) -> None:
    check = SERVICES[name]["healthcheck"]
    assert check["test"][0] == "CMD" and len(check["test"]) > 1
    assert not check.get("disable", False)


def test_migrate_runs_once_after_postgres_is_healthy() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["healthcheck"]["test"] == ["CMD", "leadgate", "migrate", "--check"]


@pytest.mark.parametrize("name", GATEWAYS + WORKERS)
def test_gateways_and_workers_start_after_the_migration_and_their_servers(name: str) -> None:
    depends = {k: v["condition"] for k, v in SERVICES[name]["depends_on"].items()}
    assert depends == AFTER_MIGRATION


def test_gateways_serve_on_their_own_ports_with_the_image_health_check() -> None:
    image_check = healthcheck_command(dockerfile())
    ports = []
    for name in GATEWAYS:
        gateway = SERVICES[name]
        assert gateway["command"] == ["serve"]
        assert gateway["healthcheck"]["test"] == ["CMD", *image_check]
        assert seconds(gateway["stop_grace_period"]) > SHUTDOWN_TIMEOUT
        ports += gateway["ports"]
    assert len(set(ports)) == len(GATEWAYS) and all(p.endswith(":8080") for p in ports)


def test_workers_serve_metrics_their_check_reaches_and_drain_before_the_kill() -> None:
    env = SERVICES["worker-1"]["environment"]
    timeout = float(env.get("LEADGATE_DELIVERY_TIMEOUT", Settings().delivery_timeout))
    for name in WORKERS:
        worker = SERVICES[name]
        assert worker["command"] == ["worker"]
        assert worker["environment"]["LEADGATE_WORKER_METRICS_PORT"]
        assert "LEADGATE_WORKER_METRICS_PORT" in " ".join(worker["healthcheck"]["test"])
        assert seconds(worker["stop_grace_period"]) > timeout + WORKER_DRAIN


@pytest.mark.parametrize("name", LEADGATE)
def test_leadgate_services_build_the_one_image_and_need_a_secret_key(name: str) -> None:
    service = SERVICES[name]
    assert (COMPOSE.parent / service["build"]["context"] / service["build"]["dockerfile"]).samefile(
        DOCKERFILE
    )
    assert service["image"] == SERVICES["migrate"]["image"]
    env = service["environment"]
    # Compose refuses to start without it: no key is baked into the file.
    assert re.fullmatch(r"\$\{LEADGATE_SECRET_KEYS:\?[^}]+\}", env["LEADGATE_SECRET_KEYS"])
    assert env["LEADGATE_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["LEADGATE_DATABASE_URL"]
    assert env["LEADGATE_REDIS_URL"] == "redis://redis:6379/0"


def test_every_leadgate_name_in_the_file_is_a_setting() -> None:
    assert names_in(COMPOSE.read_text()) - setting_names() == set()
