"""Drive wrk with the postback Lua script and read back what it measured.

The Lua script's done() prints one line starting with "WRKJSON " holding the request count,
wrk's error counters (socket errors and non-2xx/3xx responses), latency percentiles in
microseconds and a count per HTTP status; that line is parsed here, not wrk's prose.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA_SCRIPT = Path(__file__).resolve().parent / "lua" / "postback.lua"
MARKER = "WRKJSON "


class WrkMissing(RuntimeError):
    """wrk is not installed."""


class WrkFailed(RuntimeError):
    """wrk exited badly or printed no result."""


@dataclass(frozen=True)
class Load:
    """How hard and how long to push."""

    threads: int
    connections: int
    duration_s: int
    timeout_s: int = 10


@dataclass(frozen=True)
class LeadMix:
    """What the Lua script sends: new leads, or updates of a fixed pool of leads."""

    api_key: str
    nonce: str
    mode: str  # "new" or "matched"
    pool: int = 1000


@dataclass
class WrkResult:
    """One wrk run, as its done() reported it."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    statuses: dict[str, int]
    wrk_cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def socket_error_count(self) -> int:
        return sum(self.socket_errors.values())


def wrk_path() -> str:
    """The wrk binary, or WrkMissing with the way to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise WrkMissing(
            "wrk is not installed. On Debian/Ubuntu: sudo apt-get update && "
            "sudo apt-get install -y wrk"
        )
    return path


def wrk_argv(url: str, load: Load, mix: LeadMix) -> list[str]:
    """The wrk command line for one run."""
    return [
        wrk_path(),
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.duration_s}s",
        f"--timeout={load.timeout_s}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        mix.api_key,
        mix.nonce,
        mix.mode,
        str(mix.pool),
    ]


def parse_output(stdout: str) -> WrkResult:
    """Build a WrkResult from the WRKJSON line of wrk's output."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise WrkFailed("wrk printed no WRKJSON line:\n" + stdout[-2000:])
    data = json.loads(lines[-1][len(MARKER) :])
    errors = {k: int(v) for k, v in data["errors"].items()}
    latency = data["latency_us"]
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        non_2xx=errors.pop("status"),
        socket_errors=errors,
        statuses={str(k): int(v) for k, v in data["statuses"].items()},
    )


def children_cpu() -> float:
    """CPU seconds used so far by reaped child processes of this process."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, load: Load, mix: LeadMix, output_path: Path | None = None) -> WrkResult:
    """Run wrk once against url, keep its raw output, and return what it measured."""
    argv = wrk_argv(url, load, mix)
    cpu_before = children_cpu()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=load.duration_s + load.timeout_s + 30
    )
    wrk_cpu = children_cpu() - cpu_before
    if output_path is not None:
        shown = ["<api key>" if arg == mix.api_key else arg for arg in argv]
        output_path.write_text(" ".join(shown) + "\n\n" + done.stdout + done.stderr)
    if done.returncode != 0:
        raise WrkFailed(f"wrk exited with {done.returncode}:\n{done.stderr[-2000:]}")
    result = parse_output(done.stdout)
    result.wrk_cpu_s = wrk_cpu
    return result
