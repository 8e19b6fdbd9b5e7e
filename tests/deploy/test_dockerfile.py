"""deploy/Dockerfile: hadolint finds nothing, and its build, install and start commands work.

No container daemon runs here, so the image is not built. Instead the test copies what the
Dockerfile copies, runs its `pip wheel` and `pip install` lines (leaving the dependencies to this
environment, which has them: the wheel's own contents are what is proven), and starts the
installed `leadgate` with the image's entry point, command, environment and health check.
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.embedded import free_port
from tests.conftest import TEST_SECRET_KEYS, Servers
from tests.deploy.files import (
    DOCKERFILE,
    ROOT,
    Instruction,
    dockerfile,
    final_stage,
    healthcheck_command,
    image_env,
    image_user_id,
    one,
)

BIN = Path(sys.executable).parent
INSTRUCTIONS = dockerfile()
IMAGE_WHEELS = "/wheels"  # where the build stage leaves its wheels
STARTUP = 20.0


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [BIN / "hadolint", "--no-color", DOCKERFILE], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_two_stages_on_a_slim_python_and_the_image_runs_as_no_root_user() -> None:
    bases = [i.words()[0] for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(bases) == 2 and all(b.startswith("python:3.11-slim") for b in bases)
    final = final_stage(INSTRUCTIONS)
    assert image_user_id(INSTRUCTIONS) != 0
    assert f"--uid {image_user_id(INSTRUCTIONS)}" in _useradd(final)


def _useradd(final: list[Instruction]) -> str:
    (found,) = [i.arguments for i in final if i.keyword == "RUN" and "useradd" in i.arguments]
    return found


def test_entry_point_is_the_leadgate_console_script_and_serve_is_the_default() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    final = final_stage(INSTRUCTIONS)
    assert one(final, "ENTRYPOINT").exec_form() == ["leadgate"]
    assert "leadgate" in scripts
    assert one(final, "CMD").exec_form() == ["serve"]
    port = image_env(INSTRUCTIONS)["LEADGATE_PORT"]
    assert one(final, "EXPOSE").arguments == port
    assert "/healthz" in " ".join(healthcheck_command(INSTRUCTIONS))


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh environment holding the leadgate wheel built and installed as the Dockerfile
    does; its bin/ comes first on PATH, as the image's Python does."""
    tmp = tmp_path_factory.mktemp("image")
    context, wheels, venv = tmp / "src", tmp / "wheels", tmp / "venv"
    _copy_build_context(context)
    _build_wheel(context, wheels)
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    # The dependencies come from this environment: a path, not a site directory, so its
    # editable install of leadgate (a .pth hook) does not come with them.
    (purelib,) = glob.glob(str(venv / "lib" / "python*" / "site-packages"))
    Path(purelib, "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    _install_wheel(venv, wheels)
    yield venv


def _stage_of(keyword: str, needle: str) -> Instruction:
    (found,) = [i for i in INSTRUCTIONS if i.keyword == keyword and needle in i.arguments]
    return found


def _copy_build_context(context: Path) -> None:
    """What the build stage COPYs, where it puts it (paths relative to its WORKDIR)."""
    context.mkdir()
    for copy in [i for i in INSTRUCTIONS if i.stage == 0 and i.keyword == "COPY"]:
        *sources, target = copy.words()
        for source in sources:
            origin = ROOT / source
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    context / target,
                    symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
            else:
                shutil.copy2(origin, context / target)


def _build_wheel(context: Path, wheels: Path) -> None:
    words = _stage_of("RUN", "pip wheel").words()
    assert words[:2] == ["pip", "wheel"] and words[-1] == "."
    words = [str(wheels) if w == IMAGE_WHEELS else w for w in words]
    # The dependencies' wheels are left out: they are PyPI's, and this environment has them.
    run([sys.executable, "-m", *words, "--no-deps", "--no-build-isolation"], cwd=context)


def _install_wheel(venv: Path, wheels: Path) -> None:
    words = [w for w in _stage_of("RUN", "pip install").words() if not w.startswith("--mount=")]
    assert words[:2] == ["pip", "install"]
    local = [w.replace(IMAGE_WHEELS, str(wheels)) for w in words[2:]]
    expanded = [m for w in local for m in (sorted(glob.glob(w)) if "*" in w else [w])]
    assert sum(w.endswith(".whl") for w in expanded) == 1, expanded
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         *expanded, "--no-deps"])  # fmt: skip


def _image_environment(venv: Path, **settings: str) -> dict[str, str]:
    outside = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    path = f"{venv / 'bin'}{os.pathsep}{outside.get('PATH', '')}"
    return {**outside, **image_env(INSTRUCTIONS), "PATH": path, **settings}


def test_the_installed_wheel_is_what_runs(installed: Path) -> None:
    env = _image_environment(installed)
    entry = one(final_stage(INSTRUCTIONS), "ENTRYPOINT").exec_form()
    assert shutil.which(entry[0], path=env["PATH"]) == str(installed / "bin" / entry[0])
    shown = run([*entry, "--help"], env=env, cwd=installed).stdout
    assert {"serve", "worker", "migrate"} <= set(shown.split())
    where = run(["python", "-c", "import gateway; print(gateway.__file__)"], env=env, cwd="/")
    assert where.stdout.startswith(str(installed))


def test_the_image_migrates_then_serves_and_its_health_check_passes(
    installed: Path, servers: Servers, fresh_database: str
) -> None:
    entry = one(final_stage(INSTRUCTIONS), "ENTRYPOINT").exec_form()
    port = str(free_port())
    env = _image_environment(installed, LEADGATE_DATABASE_URL=fresh_database,
                             LEADGATE_REDIS_URL=servers.redis_url, LEADGATE_PORT=port,
                             LEADGATE_SECRET_KEYS=TEST_SECRET_KEYS)  # fmt: skip
    migrated = run([*entry, "migrate"], env={**env, "COLUMNS": "200"}, cwd=installed)
    assert "applied schema version" in migrated.stdout + migrated.stderr
    command = one(final_stage(INSTRUCTIONS), "CMD").exec_form()
    log = installed / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen([*entry, *command], env=env, cwd=installed, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            check = subprocess.run(healthcheck_command(INSTRUCTIONS), env=env, capture_output=True)
            if check.returncode == 0:
                break
            assert gateway.poll() is None, log.read_text()
            assert time.monotonic() < deadline, check.stderr.decode()
            time.sleep(0.2)
    finally:
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(10)
    assert gateway.returncode == 0
