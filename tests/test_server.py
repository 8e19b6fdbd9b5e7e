"""`leadgate serve` as a process: several processes on one port, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil
import requests

from gateway.embedded import free_port
from tests.conftest import TEST_SECRET_KEYS, Servers

STARTUP = 30.0


def serving_children(parent: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """The gateway processes (spawn's resource tracker is a child too, and is left out)."""
    return [
        p for p in psutil.Process(parent.pid).children()
        if any("spawn_main" in part for part in p.cmdline())
    ]  # fmt: skip


def listeners(port: int) -> set[int]:
    return {
        c.pid for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    }  # fmt: skip


def test_several_processes_share_the_port_and_stop_on_sigterm(servers: Servers, conn: Any) -> None:
    port = free_port()
    env = {**os.environ, "LEADGATE_DATABASE_URL": servers.database_url,
           "LEADGATE_REDIS_URL": servers.redis_url, "LEADGATE_PORT": str(port),
           "LEADGATE_PROCESSES": "2", "LEADGATE_LOG_FORMAT": "json",
           "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS}  # fmt: skip
    leadgate = os.path.join(os.path.dirname(sys.executable), "leadgate")
    parent = subprocess.Popen(
        [leadgate, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            started = serving_children(parent)
            if len(started) == 2 and listeners(port) == {p.pid for p in started}:
                break
            time.sleep(0.1)
        assert len(started) == 2
        assert listeners(port) == {p.pid for p in started}
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(40) == 0
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in started)
    finally:
        # Whatever happened above, nothing this test started outlives it.
        for child in started:
            if child.is_running():
                child.kill()
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)


async def test_sigterm_commits_the_open_batch_before_the_gateway_exits(
    servers: Servers, conn: Any, make_tenant: Any
) -> None:
    import asyncio

    import aiohttp

    from tests.live import live_gateway

    tenant = await make_tenant()
    # Writes wait up to 1 s for company: SIGTERM comes while this one's batch is still open.
    with live_gateway(servers, LEADGATE_BATCH_MAX_WAIT="1", LEADGATE_BATCH_MAX_ITEMS="1000",
                      LEADGATE_RATE_LIMIT="0") as base:  # fmt: skip
        pid = _pid_on(int(base.rsplit(":", 1)[1]))
        async with aiohttp.ClientSession() as http:
            sent = asyncio.create_task(
                http.post(f"{base}/v1/postback", json={"email": "last@example.com"},
                          headers=tenant.headers)
            )  # fmt: skip
            await asyncio.sleep(0.5)  # the request has reached its batch, which waits
            os.kill(pid, signal.SIGTERM)
            response = await sent
            assert response.status == 201
            lead = (await response.json())["data"]
    assert await conn.fetchval("SELECT email FROM leads WHERE id = $1", lead["id"]) == (
        "last@example.com"
    )


def _pid_on(port: int) -> int:
    (pid,) = listeners(port)
    return pid
