"""The dashboard's files ship in the package: every one matches a package-data pattern."""

from __future__ import annotations

import tomllib
from pathlib import Path

import gateway.dashboard
from gateway.devmode import Demo, banner
from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(gateway.dashboard.__file__).resolve().parent


def test_every_template_and_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "gateway*" in config["packages"]["find"]["include"]
    patterns = config["package-data"]["gateway.dashboard"]
    shipped = {p for pattern in patterns for p in PACKAGE.glob(pattern) if p.is_file()}
    folders = (PACKAGE / "templates", PACKAGE / "static")
    on_disk = {p for folder in folders for p in folder.rglob("*") if p.is_file()}
    assert on_disk - shipped == set()
    assert len(on_disk) >= 10


def test_leadgate_dev_prints_the_dashboards_address() -> None:
    demo = Demo("ten_1", "lg_live_x", "ep_1", "http://127.0.0.1:8081/demo", "whsec_x")
    assert "http://127.0.0.1:8080/dashboard/" in banner(Settings(), demo)
