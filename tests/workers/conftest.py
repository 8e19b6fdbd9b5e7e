"""Fixtures for delivery: receivers, endpoints, and workers running for real.

A worker here is the real arq worker (`workers.main.build_worker`) on the test Redis and
Postgres, running in the test's event loop; retries are made fast through settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import Tenant
from tests.receivers import Receiver, start
from workers.main import running_in_loop

FAST = {
    "allow_private_destinations": True,
    "retry_schedule": (0.0, 0.2, 0.2, 0.2),
    "delivery_timeout": 2.0,
    "relay_interval": 0.2,
    "circuit_failures": 50,
    "circuit_cooldown": 1.0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update=FAST)


ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receiver_factory() -> AsyncIterator[ReceiverFactory]:
    runners: list[web.AppRunner] = []

    async def make(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        runners.append(await start(receiver))
        return receiver

    yield make
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> Receiver:
    return await receiver_factory()


WorkerFactory = Callable[..., Awaitable[None]]


@pytest.fixture
async def run_worker(conn: asyncpg.Connection) -> AsyncIterator[WorkerFactory]:
    """Start real workers with the given settings; each stops, as on SIGTERM, at the end."""
    async with contextlib.AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []

        async def start_worker(settings: Settings) -> None:
            tasks.append(await stack.enter_async_context(running_in_loop(settings)))

        yield start_worker
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # a worker that died fails the test


@pytest.fixture
async def worker(run_worker: WorkerFactory, settings: Settings) -> None:
    await run_worker(settings)


async def add_endpoint(
    client: TestClient[Any, Any], tenant: Tenant, url: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/endpoints", json={"url": url, **fields}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 201, body
    endpoint: dict[str, Any] = body["data"]
    return endpoint


async def post_lead(client: TestClient[Any, Any], tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    body = await response.json()
    assert response.status in (200, 201), body
    lead: dict[str, Any] = body["data"]
    return lead


async def delivery_of(conn: asyncpg.Connection, event_type: str = "lead.created") -> Any:
    return await conn.fetchrow(
        "SELECT * FROM deliveries WHERE event_type = $1 ORDER BY created_at LIMIT 1", event_type
    )


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
