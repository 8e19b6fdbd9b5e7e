"""Revocation and tenant changes across real gateway processes, each with a minute-long cache.

Three `leadgate serve` commands run at once: two of one process each, and one of
LEADGATE_PROCESSES=2 on a single port. Every request goes on a fresh connection, so the kernel
spreads those on the shared port over both of its processes. A change made silently (schema.sql's
triggers kept quiet) first proves that every process answers from its cache; then the real
command (`leadgate keys revoke`, `leadgate tenants update`) runs, and the very next requests,
to every process, see the change.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.embedded import free_port
from tests.conftest import TEST_SECRET_KEYS, Servers, Tenant
from tests.test_keys import RESTORE_SILENTLY, REVOKE_SILENTLY, silently

LEADGATE = os.path.join(os.path.dirname(sys.executable), "leadgate")
# Requests per gateway per round; with two processes on one port, the chance that all of them
# reach the same process is 2^-15.
PER_ROUND = 16
STARTUP = 30.0


def _env(servers: Servers, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    return {**base, "LEADGATE_DATABASE_URL": servers.database_url,
            "LEADGATE_REDIS_URL": servers.redis_url, "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
            "LEADGATE_LOG_FORMAT": "json", "LEADGATE_AUTH_CACHE_SECONDS": "60",
            **extra}  # fmt: skip


@pytest.fixture
async def gateways(servers: Servers, conn: asyncpg.Connection) -> AsyncIterator[list[str]]:
    """Base URLs of three `leadgate serve` commands (1, 1 and 2 processes)."""
    started: list[subprocess.Popen[bytes]] = []
    bases: list[str] = []
    try:
        for processes in (1, 1, 2):
            port = free_port()
            env = _env(servers, LEADGATE_PORT=str(port), LEADGATE_PROCESSES=str(processes))
            started.append(
                subprocess.Popen(
                    [LEADGATE, "serve"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
            )
            bases.append(f"http://127.0.0.1:{port}")
        await _healthy(bases, started)
        yield bases
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


async def _healthy(bases: list[str], started: list[subprocess.Popen[bytes]]) -> None:
    async with asyncio.timeout(STARTUP), aiohttp.ClientSession() as http:
        for base in bases:
            while True:
                assert all(p.poll() is None for p in started), "a gateway exited at start"
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)


async def statuses(bases: list[str], method: str, path: str, tenant: Tenant, **kw: Any) -> set[int]:
    """The statuses of PER_ROUND requests to each gateway, each on a new connection."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(base: str) -> int:
            async with http.request(method, base + path, headers=tenant.headers, **kw) as r:
                await r.read()
                return r.status

        return set(await asyncio.gather(*(one(b) for b in bases for _ in range(PER_ROUND))))


async def all_cached(bases: list[str], tenant: Tenant, conn: asyncpg.Connection) -> None:
    """Wait until every process answers for the key from its cache (a silent revocation is
    not seen anywhere), then undo the silent revocation."""
    async with asyncio.timeout(STARTUP):
        while True:
            assert await statuses(bases, "GET", "/v1/leads", tenant) == {200}
            await silently(conn, REVOKE_SILENTLY, tenant.key_id)
            seen = await statuses(bases, "GET", "/v1/leads", tenant)
            await silently(conn, RESTORE_SILENTLY, tenant.key_id)
            if seen == {200}:
                return
            await asyncio.sleep(0.1)  # a process whose listener is not connected yet


async def leadgate(servers: Servers, *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [LEADGATE, *args], env=_env(servers), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
async def test_after_keys_revoke_returns_every_gateway_process_refuses_the_key(
    gateways: list[str], tenant: Tenant, conn: asyncpg.Connection, servers: Servers
) -> None:
    await all_cached(gateways, tenant, conn)

    await leadgate(servers, "keys", "revoke", tenant.key_id)

    assert await statuses(gateways, "GET", "/v1/leads", tenant) == {401}


@pytest.mark.slow
async def test_after_tenants_update_every_gateway_process_uses_the_new_pipeline(
    gateways: list[str], tenant: Tenant, conn: asyncpg.Connection, servers: Servers
) -> None:
    lead = {"json": {"email": "p@example.com", "stage": "Paid"}}
    await all_cached(gateways, tenant, conn)
    assert await statuses(gateways, "POST", "/v1/postback", tenant, **lead) == {400}

    await leadgate(servers, "tenants", "update", tenant.id, "--stages", "Started,Paid")

    assert await statuses(gateways, "POST", "/v1/postback", tenant, **lead) <= {200, 201}
