"""What the tests of `deploy/` share: where the files are, the Dockerfile read as instructions,
and the names of Leadgate's settings."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"

# Read from the environment outside Settings: the config file's path.
OTHER_NAMES = {"LEADGATE_CONFIG"}
SETTING_NAME = re.compile(r"\bLEADGATE_[A-Z0-9_]+\b")


def setting_names() -> set[str]:
    return {f"LEADGATE_{name.upper()}" for name in Settings.model_fields} | OTHER_NAMES


def names_in(text: str) -> set[str]:
    return set(SETTING_NAME.findall(text))


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        parsed: list[str] = json.loads(self.arguments)
        return parsed

    def words(self) -> list[str]:
        return shlex.split(self.arguments)


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each with its stage's index."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # comments may sit inside a continuation
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    instructions, stage = [], -1
    for text in logical:
        keyword, _, arguments = text.partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword.upper(), " ".join(arguments.split())))
    return instructions


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def image_env(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in final_stage(instructions):
        if i.keyword == "ENV":
            for word in i.words():
                name, _, value = word.partition("=")
                env[name] = value
    return env


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    check = one(final_stage(instructions), "HEALTHCHECK")
    _, _, command = check.arguments.partition(" CMD ")
    return Instruction(check.stage, "CMD", command).exec_form()


def image_user_id(instructions: list[Instruction]) -> int:
    user = one(final_stage(instructions), "USER").arguments
    return int(user.split(":")[0])


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(path.read_text()) if d]
