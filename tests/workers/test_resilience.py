"""The guarantee under stress: a killed worker, a flushed Redis, two workers at once, SIGTERM.

Every lead.created event must reach the receiver at least once (its `webhook-id` is the event
id) and every delivery must end `succeeded`. Workers run as real `leadgate worker` processes
where a signal is part of the story, in-process otherwise.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway.constants import QUEUE_NAME
from gateway.settings import Settings
from tests.conftest import Servers, Tenant
from tests.receivers import Receiver
from tests.workers.conftest import ReceiverFactory, WorkerFactory, add_endpoint
from tests.workers.helpers.api import post_leads
from tests.workers.helpers.processes import WorkerProcess
from tests.workers.helpers.records import all_in_state

Client = TestClient[Any, Any]
StartProcess = Callable[..., WorkerProcess]


@pytest.fixture
def worker_process(servers: Servers, tmp_path: Path) -> Iterator[StartProcess]:
    """Start `leadgate worker` processes on the test servers; all are killed at the end."""
    started: list[WorkerProcess] = []

    def start(**env: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        process = WorkerProcess.start(servers.database_url, servers.redis_url, log, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


async def lead_created_events(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT event_id FROM deliveries WHERE event_type = 'lead.created'")
    return {r["event_id"] for r in rows}


async def leased_now(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM deliveries WHERE state = 'pending' AND leased_until > now()"
    )
    return count


@pytest.mark.slow
async def test_a_worker_killed_mid_burst_loses_nothing(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker_process: StartProcess,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(delay=0.2)
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    first = worker_process(LEADGATE_WORKER_CONCURRENCY="10")
    await first.started()

    await post_leads(client, tenant, 100)
    await receiver.wait_for(20, timeout=15)
    first.signal(signal.SIGKILL)
    assert await first.exited(timeout=5) == -signal.SIGKILL
    assert await leased_now(conn) > 0  # it died holding deliveries

    second = worker_process(LEADGATE_WORKER_CONCURRENCY="10")
    await second.started()
    await all_in_state(conn, "succeeded", 100, timeout=25)

    events = await lead_created_events(conn)
    assert len(events) == 100
    assert events <= set(receiver.ids())


async def test_deliveries_survive_a_flushed_redis(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    run_worker: WorkerFactory,
    settings: Settings,
    servers: Servers,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    await post_leads(client, tenant, 10)
    redis = aioredis.from_url(servers.redis_url)
    try:
        assert await redis.zcard(QUEUE_NAME) == 1  # one wake-up for them all, waiting for a worker
        await redis.flushdb()  # the queue's database only: the test server may be shared
        assert await redis.zcard(QUEUE_NAME) == 0
    finally:
        await redis.aclose()

    await run_worker(settings)
    await receiver.wait_for(10)
    await all_in_state(conn, "succeeded", 10)

    assert sorted(receiver.ids()) == sorted(await lead_created_events(conn))


@pytest.mark.slow
async def test_two_workers_on_one_burst_send_each_event_once(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    await run_worker(settings)
    await run_worker(settings)

    await post_leads(client, tenant, 200)
    await all_in_state(conn, "succeeded", 200, timeout=20)

    ids = receiver.ids()
    assert len(ids) == 200
    assert set(ids) == await lead_created_events(conn)


@pytest.mark.slow
async def test_sigterm_hands_back_in_flight_deliveries_and_a_new_worker_finishes_them(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker_process: StartProcess,
    conn: asyncpg.Connection,
) -> None:
    delivery_timeout = 1.0
    receiver = await receiver_factory(delay=0.5)
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    first = worker_process(LEADGATE_WORKER_CONCURRENCY="5")
    await first.started()

    await post_leads(client, tenant, 30)
    await receiver.wait_for(5, timeout=10)
    first.signal(signal.SIGTERM)
    assert await first.exited(timeout=delivery_timeout + 5 + 2) == 0
    assert await leased_now(conn) == 0

    second = worker_process(LEADGATE_WORKER_CONCURRENCY="5")
    await second.started()
    await all_in_state(conn, "succeeded", 30, timeout=15)

    assert await lead_created_events(conn) <= set(receiver.ids())
