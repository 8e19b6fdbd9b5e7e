"""Child servers of a benchmark run: start, wait for readiness, stop, and account CPU.

Every server runs in its own session (process group), so stopping it reaches its workers too:
SIGTERM to the group, then SIGKILL after a grace period. CPU use is read from /proc, per
process group or per process family, so a run can say where the machine's time went.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """A server exited or did not become ready in time."""


@dataclass
class Server:
    """A running server process (the leader of its own process group)."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pgid(self) -> int:
        return self.process.pid


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def healthy(url: str) -> bool:
    """Whether GET url answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(server: Server, timeout: float) -> None:
    """Poll /healthz until it answers 200; raise ServerFailed on exit or timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"{server.name} exited with {server.process.returncode} before it was ready:\n"
                + log_tail(server.log_path)
            )
        if healthy(server.base_url + "/healthz"):
            return
        time.sleep(0.2)
    raise ServerFailed(
        f"{server.name} not ready after {timeout:.0f}s:\n" + log_tail(server.log_path)
    )


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after `grace`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)


@contextlib.contextmanager
def running(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    base_url: str,
    log_path: Path,
    ready_timeout: float = 30.0,
) -> Iterator[Server]:
    """Start a server, wait until /healthz answers, and always stop it on the way out."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, base_url, log_path)
    try:
        wait_ready(server, ready_timeout)
        yield server
    finally:
        stop(server)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])


def cpu_by_group(pgid: int) -> dict[int, int]:
    """CPU clock ticks (user + system) used so far by each live process of a process group."""
    ticks = {}
    for pid in _pids():
        fields = _stat_fields(pid)
        # After the name: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12)
        if fields is not None and int(fields[2]) == pgid:
            ticks[pid] = _ticks(fields)
    return ticks


def rss_of_group(pgid: int) -> int:
    """Resident memory, in bytes, of every live process of a process group."""
    total = 0
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is not None and int(fields[2]) == pgid:
            # rss (in pages) is field 24 of stat, 21 after the name and state.
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total


def cpu_of_family(parent: int | None) -> dict[int, int]:
    """CPU clock ticks used so far by a process and each of its live direct children.

    A Postgres server is its postmaster and the backends and helpers it forks. None (a
    server not on this machine) gives nothing.
    """
    ticks: dict[int, int] = {}
    if parent is None:
        return ticks
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields is not None and (pid == parent or int(fields[1]) == parent):
            ticks[pid] = _ticks(fields)
    return ticks


def cpu_of_pids(pids: set[int]) -> dict[int, int]:
    """CPU clock ticks used so far by each of these processes that is still alive."""
    ticks = {}
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks[pid] = _ticks(fields)
    return ticks


def cpu_seconds_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds the processes alive at `after` used since `before` (new ones: all of it).

    Processes that exited in between are left out rather than subtracted.
    """
    return sum(t - before.get(pid, 0) for pid, t in after.items()) / CLOCK_TICKS


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def iowait_seconds() -> float:
    """Seconds the machine's CPUs spent waiting for I/O since boot."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()
    return int(first[5]) / CLOCK_TICKS
