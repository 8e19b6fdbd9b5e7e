"""The delivery benchmarks' harness: child processes, CPU accounting, the receiver, Leadgate.

Shared by `bench/delivery.py` and `bench/latency.py`. Every child runs in its own session
(process group), so stopping it (SIGTERM, then SIGKILL after a grace period) reaches all its
processes. CPU time is read from /proc per process group and per process family (a parent and
its children: Postgres is its postmaster and backends), and shown in cores (1.0 = one core
busy for the whole window), with whatever else the machine did as `other`, and `iowait`:
idle CPU time spent waiting for I/O, where slow disk flushes show.

Leadgate is prepared through its documented interfaces: `leadgate migrate`, `leadgate tenants
create`, `leadgate keys create`, and `POST /v1/endpoints` on a `leadgate serve`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import benchdb
import children
import leadgate_admin
import psycopg
import redis

PEERS_DIR = Path(__file__).resolve().parent
BENCH_DIR = PEERS_DIR.parent
POLL_SECONDS = 0.1
# Requests per minute per key for the bench tenant: far above any rate the load reaches.
RATE_LIMIT_PER_MINUTE = 1_000_000_000


class Deployment(Protocol):
    """Where Leadgate runs for a benchmark: its database, its Redis, how to start it."""

    @property
    def database_url(self) -> str: ...
    @property
    def redis_url(self) -> str: ...
    @property
    def leadgate(self) -> Path: ...


# --- processes and CPU ---------------------------------------------------------------------


def python() -> str:
    return sys.executable


def start(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> children.Server:
    """Start a child in its own session (so stopping it reaches all its processes)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return children.Server(name, process, "", log_path)


@contextlib.contextmanager
def started(
    name: str, argv: list[str], env: dict[str, str], log_path: Path
) -> Iterator[children.Server]:
    """A child for the length of a block, always stopped (SIGTERM, then SIGKILL) after it."""
    child = start(name, argv, env, log_path)
    try:
        yield child
    finally:
        children.stop(child)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_ticks() -> dict[int, tuple[int, int, int]]:
    """(ppid, pgrp, utime + stime ticks) of every live process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            table[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return table


@dataclass(frozen=True)
class Watched:
    """Who to account CPU for: process groups and process families (a parent and children)."""

    groups: dict[str, int]
    families: dict[str, int]

    def label(self, pid: int, ppid: int, pgrp: int) -> str | None:
        for name, pgid in self.groups.items():
            if pgrp == pgid:
                return name
        for name, parent in self.families.items():
            if pid == parent or ppid == parent:
                return name
        return None


@dataclass
class CpuMeter:
    """CPU seconds used per label between start() and stop(), in cores (1.0 = one core)."""

    watched: Watched
    before: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    busy_before: float = 0.0
    iowait_before: float = 0.0
    began: float = 0.0

    def start(self) -> None:
        self.before = process_ticks()
        self.busy_before = children.machine_busy()[0]
        self.iowait_before = children.iowait_seconds()
        self.began = time.monotonic()

    def stop(self, exited: dict[str, float] | None = None) -> dict[str, float]:
        """Cores per label; `exited` adds the CPU seconds of children that have already exited
        (gone from /proc), as they reported them."""
        after = process_ticks()
        busy = children.machine_busy()[0] - self.busy_before
        wall = max(time.monotonic() - self.began, 1e-9)
        used: dict[str, float] = {
            name: 0.0 for name in (*self.watched.groups, *self.watched.families)
        }
        for pid, (ppid, pgrp, ticks) in after.items():
            name = self.watched.label(pid, ppid, pgrp)
            if name is not None:
                old = self.before.get(pid)
                used[name] += (ticks - (old[2] if old else 0)) / children.CLOCK_TICKS
        for name, seconds in (exited or {}).items():
            used[name] = used.get(name, 0.0) + seconds
        cores = {name: seconds / wall for name, seconds in used.items()}
        cores["other"] = max(0.0, busy / wall - sum(cores.values()))
        # Not CPU: time the CPUs sat idle waiting for I/O (slow fsyncs show here).
        cores["iowait"] = (children.iowait_seconds() - self.iowait_before) / wall
        return {name: round(value, 2) for name, value in cores.items()}


def analyze(dsn: str) -> None:
    """Give the planner the backlog's statistics, as autovacuum would in a running system."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE")


def infrastructure(database_url: str, redis_url: str) -> dict[str, int]:
    """Postgres (postmaster and backends) and Redis, when they run on this machine."""
    families = {"driver": os.getpid()}
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    if row is not None and (fields := _stat(int(row[0]))) is not None:
        families["postgres"] = int(fields[1])
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        redis_pid = int(client.info("server")["process_id"])
    finally:
        client.close()
    if Path(f"/proc/{redis_pid}").exists():
        families["redis"] = redis_pid
    return families


# --- waiting ------------------------------------------------------------------------------


class TimedOut(RuntimeError):
    """A scenario did not finish within --timeout."""


def wait_until(done: Callable[[], bool], child: children.Server, timeout: float) -> float:
    """Poll `done` every POLL_SECONDS; the monotonic time it first held. Raises on exit/timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return time.monotonic()
        if child.process.poll() is not None and not done():
            raise children.ServerFailed(
                f"{child.name} exited with {child.process.returncode}:\n"
                + children.log_tail(child.log_path)
            )
        time.sleep(POLL_SECONDS)
    raise TimedOut(f"{child.name} did not finish in {timeout:.0f}s")


# --- the receiver -------------------------------------------------------------------------


@contextlib.contextmanager
def receiver(delay: float, log_path: Path, *, record: bool = False) -> Iterator[children.Server]:
    """`bench/receiver.py` in its own process, ready, for the length of a block."""
    port = children.free_port()
    argv = [python(), str(BENCH_DIR / "receiver.py"), "--port", str(port), "--delay", str(delay)]
    argv += ["--record"] if record else []
    base_url = f"http://127.0.0.1:{port}"
    with children.running("receiver", argv, dict(os.environ), base_url, log_path) as server:
        yield server


def receiver_count(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + "/count", timeout=5) as response:
        result: dict[str, Any] = json.loads(response.read())
    return result


def receiver_reset(base_url: str) -> None:
    request = urllib.request.Request(base_url + "/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


# --- Leadgate -----------------------------------------------------------------------------


def leadgate_env(opts: Deployment, **extra: str) -> dict[str, str]:
    env = leadgate_admin.Leadgate(opts.leadgate, opts.database_url, opts.redis_url).env()
    env["LEADGATE_ALLOW_PRIVATE_DESTINATIONS"] = "true"
    env.update(extra)
    return env


def fresh_tenant(opts: Deployment) -> tuple[str, str]:
    """Recreate the database, flush Redis, migrate; a tenant and its API key (id, key)."""
    benchdb.recreate_database(opts.database_url)
    benchdb.flush_redis(opts.redis_url)
    admin = leadgate_admin.Leadgate(opts.leadgate, opts.database_url, opts.redis_url)
    admin.run(["migrate"])
    tenant = admin.run_json(["tenants", "create", "bench-delivery", "--json"])
    # The per-key limiter still runs on every postback, but never refuses one of a long run.
    admin.run(["tenants", "update", tenant["id"], "--rate-limit", str(RATE_LIMIT_PER_MINUTE)])
    key = admin.run_json(
        ["keys", "create", "--tenant", tenant["id"], "--scopes", "ingest,read,manage", "--json"]
    )
    return tenant["id"], key["key"]


@contextlib.contextmanager
def gateway(opts: Deployment, log_path: Path) -> Iterator[children.Server]:
    """`leadgate serve` in its own process, ready, for the length of a block."""
    port = children.free_port()
    env = leadgate_env(opts, LEADGATE_PORT=str(port))
    argv = [str(opts.leadgate), "serve"]
    with children.running("gateway", argv, env, f"http://127.0.0.1:{port}", log_path) as server:
        yield server


def add_endpoint(base_url: str, api_key: str, receiver_url: str) -> dict[str, Any]:
    """Register the receiver through `POST /v1/endpoints`; the endpoint with its secret."""
    request = urllib.request.Request(
        base_url + "/v1/endpoints",
        data=json.dumps({"url": receiver_url}).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        endpoint: dict[str, Any] = json.loads(response.read())["data"]
    return endpoint


def worker_argv(opts: Deployment) -> list[str]:
    """`leadgate worker`."""
    return [str(opts.leadgate), "worker"]
