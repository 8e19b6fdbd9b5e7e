"""Endpoint health: the circuit breaker and its probe, disabling a failing endpoint, rate limits.

Times are compared on the receiver's clock (`Received.at`, the event loop's); a time Postgres
recorded is brought onto it through the offset between the wall clock and the loop's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import Tenant
from tests.receivers import Received, Receiver
from tests.workers.conftest import (
    ReceiverFactory,
    WorkerFactory,
    add_endpoint,
    delivery_of,
    post_lead,
    wait_until,
)
from tests.workers.helpers.api import get_endpoint, post_leads, publish
from tests.workers.helpers.records import all_in_state, attempts_of, delivery_of_event, settled

Client = TestClient[Any, Any]

# Three failures open the circuit for a second; a long schedule keeps the first delivery pending.
CIRCUIT = {"circuit_failures": 3, "circuit_cooldown": 1.0, "retry_schedule": (0.0,) + (0.2,) * 9}
# How long the receiver takes to answer the probe, so that anything sent beside it would show.
PROBE_TAKES = 0.5
WAITING = 3


def loop_time_of(moment: datetime) -> float:
    """A wall-clock moment on the event loop's clock."""
    loop = asyncio.get_running_loop()
    return moment.timestamp() - (time.time() - loop.time())


@dataclass
class CircuitRun:
    receiver: Receiver
    endpoint_id: str
    failures_when_open: int
    open_until: float  # loop time
    probe_answered: list[float]


async def fail_three_then_recover(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> CircuitRun:
    """Three failures open the circuit; more leads come while it is open; then it recovers."""
    await run_worker(settings.model_copy(update=CIRCUIT))
    receiver = await receiver_factory()
    answered: list[float] = []

    async def answer(_: Received) -> web.StreamResponse:
        count = len(receiver.received)
        if count <= 3:
            return web.Response(status=500)
        if count == 4:
            await asyncio.sleep(PROBE_TAKES)
            answered.append(asyncio.get_running_loop().time())
        return web.Response(status=200)

    receiver.reply = answer
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="first@example.com")
    await receiver.wait_for(3)

    async def opened() -> bool:
        row = await conn.fetchrow(
            "SELECT circuit_open_until FROM endpoints WHERE id = $1", endpoint["id"]
        )
        return row["circuit_open_until"] is not None

    await wait_until(opened, timeout=5)
    health = await conn.fetchrow(
        "SELECT consecutive_failures, circuit_open_until FROM endpoints WHERE id = $1",
        endpoint["id"],
    )
    for i in range(WAITING):
        await post_lead(client, tenant, email=f"waiting{i}@example.com")
    await all_in_state(conn, "succeeded", 1 + WAITING, timeout=15)
    return CircuitRun(
        receiver,
        endpoint["id"],
        health["consecutive_failures"],
        loop_time_of(health["circuit_open_until"]),
        answered,
    )


async def test_consecutive_failures_open_the_circuit_and_nothing_is_sent_while_it_is_open(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    run = await fail_three_then_recover(
        client, tenant, receiver_factory, run_worker, settings, conn
    )

    assert run.failures_when_open == 3
    third = run.receiver.received[2]
    assert run.open_until > third.at
    assert [r for r in run.receiver.received[3:] if r.at < run.open_until] == []


async def test_a_half_open_circuit_sends_exactly_one_probe(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    run = await fail_three_then_recover(
        client, tenant, receiver_factory, run_worker, settings, conn
    )

    (probe_answered,) = run.probe_answered
    during_probe = [r for r in run.receiver.received if run.open_until <= r.at < probe_answered]
    assert len(during_probe) == 1


async def test_a_successful_probe_closes_the_circuit_and_the_waiting_deliveries_flow(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    run = await fail_three_then_recover(
        client, tenant, receiver_factory, run_worker, settings, conn
    )

    health = (await get_endpoint(client, tenant, run.endpoint_id))["health"]
    assert health == {"consecutive_failures": 0, "circuit_open_until": None, "failing_since": None}
    events = await conn.fetch("SELECT event_id FROM deliveries WHERE state = 'succeeded'")
    assert sorted(run.receiver.ids()[3:]) == sorted(r["event_id"] for r in events)


async def test_an_endpoint_failing_too_long_is_disabled_and_its_deliveries_fail(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    schedule = (0.0,) + (0.3,) * 11
    await run_worker(
        settings.model_copy(update={"endpoint_disable_after": 1.0, "retry_schedule": schedule})
    )
    receiver = await receiver_factory(statuses=[500])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    follow_up = await publish(client, tenant, type="followup.day3", delay=30)
    await post_lead(client, tenant, email="failing@example.com")
    lead_delivery = await delivery_of(conn)

    row = await settled(conn, lead_delivery["id"])
    waiting = await settled(conn, (await delivery_of_event(conn, follow_up["id"]))["id"])

    shown = await get_endpoint(client, tenant, endpoint["id"])
    assert shown["enabled"] is False
    assert shown["disabled_reason"].startswith("failing without a success since ")
    assert row["state"] == "failed"
    attempts = await attempts_of(conn, row["id"])
    assert len(attempts) < len(schedule)
    assert attempts[-1]["started_at"] - attempts[0]["started_at"] >= timedelta(seconds=1)
    assert len(receiver.received) == len(attempts)
    assert (waiting["state"], waiting["attempt_count"]) == ("failed", 0)
    assert waiting["last_error"] == "endpoint disabled: failing too long"


async def test_rate_limit_holds_across_two_workers(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, receiver.url, rate_limit=5)
    await post_leads(client, tenant, 20)
    await run_worker(settings)
    await run_worker(settings)

    await receiver.wait_for(20, timeout=15)

    times = sorted(r.at for r in receiver.received)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 5, "arrivals (s): " + " ".join(f"{t - times[0]:.3f}" for t in times)
    events = await conn.fetch("SELECT event_id FROM deliveries")
    assert sorted(receiver.ids()) == sorted(r["event_id"] for r in events)
    await all_in_state(conn, "succeeded", 20)
