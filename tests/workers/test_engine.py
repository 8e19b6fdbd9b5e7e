"""The pull-based engine: claims from Postgres, wake-ups that may be lost, ordered endpoints,
and a delivery whose endpoint vanishes while it is in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests.conftest import Servers, Tenant
from tests.deliveries import worker_running
from tests.receivers import Received, Receiver
from tests.workers.conftest import ReceiverFactory, WorkerFactory, add_endpoint, post_lead
from tests.workers.helpers.api import post_leads, publish
from tests.workers.helpers.records import attempts_of, delivery_of_event, settled

Client = TestClient[Any, Any]


async def test_a_backlog_made_while_no_worker_ran_is_delivered_once_each(
    client: Client, tenant: Tenant, receiver: Receiver, settings: Settings
) -> None:
    await add_endpoint(client, tenant, receiver.url)
    leads = await post_leads(client, tenant, 150)

    async with worker_running(settings):
        got = await receiver.wait_for(150, timeout=30)

    assert sorted(r.json()["data"]["id"] for r in got) == sorted(leads)
    assert len(set(receiver.ids())) == len(receiver.ids()) == 150


async def test_a_scheduled_delivery_whose_wake_up_never_came_goes_out_within_the_interval(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    settings: Settings,
    servers: Servers,
    run_worker: WorkerFactory,
) -> None:
    await run_worker(settings.model_copy(update={"relay_interval": 0.5}))
    await add_endpoint(client, tenant, receiver.url, event_types=["followup.*"])
    redis = aioredis.from_url(servers.redis_url)
    await redis.flushdb()  # nothing in Redis will ever say this one is due
    await redis.aclose()
    event = await publish(client, tenant, type="followup.day1", delay=1)

    (got,) = await receiver.wait_for(1, timeout=5)

    assert got.headers["webhook-id"] == event["id"]


async def test_a_lead_whose_deliveries_fail_is_retried_before_its_next_event_on_an_ordered_endpoint(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    # The first webhook fails twice; an ordered endpoint sends nothing else of that lead until
    # it has succeeded, while another lead's webhooks go on.
    failures = {"left": 2}

    async def reply(got: Received) -> web.Response:
        body = got.json()
        if body["data"].get("email") == "ada@example.com" and failures["left"]:
            failures["left"] -= 1
            return web.Response(status=500)
        return web.Response(status=200)

    receiver = await receiver_factory(reply=reply)
    await add_endpoint(client, tenant, receiver.url, ordered=True)
    ada = await post_lead(client, tenant, email="ada@example.com")
    await post_lead(client, tenant, email="ada@example.com", first_name="Ada")
    await post_lead(client, tenant, email="ada@example.com", stage="qualified")
    grace = await post_lead(client, tenant, email="grace@example.com")

    got = await receiver.wait_for(6, timeout=15)

    of_ada = [r.json()["type"] for r in got if r.json()["data"]["id"] == ada["id"]]
    assert of_ada == [
        "lead.created", "lead.created", "lead.created", "lead.updated", "lead.stage_changed",
    ]  # fmt: skip
    # Grace's webhook did not wait for Ada's first one to succeed (her third attempt).
    order = [r.json()["data"]["id"] for r in got]
    ada_success = [i for i, lead_id in enumerate(order) if lead_id == ada["id"]][2]
    assert order.index(grace["id"]) < ada_success


async def test_an_unordered_endpoint_does_not_hold_a_lead_back(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    async def reply(got: Received) -> web.Response:
        return web.Response(status=500 if got.json()["type"] == "lead.created" else 200)

    receiver = await receiver_factory(reply=reply)
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="ada@example.com")
    updated = await post_lead(client, tenant, email="ada@example.com", first_name="Ada")

    async def updated_arrived() -> bool:
        return any(r.json()["type"] == "lead.updated" for r in receiver.received)

    async with asyncio.timeout(10):
        while not await updated_arrived():
            await asyncio.sleep(0.05)
    assert updated["first_name"] == "Ada"


async def test_deleting_an_endpoint_mid_flight_drops_its_delivery_alone(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    slow = await receiver_factory(delay=1.0)
    fast = await receiver_factory(delay=0.5)
    doomed = await add_endpoint(client, tenant, slow.url)
    kept = await add_endpoint(client, tenant, fast.url)
    lead = await post_lead(client, tenant, email="ada@example.com")
    await slow.wait_for(1)
    await fast.wait_for(1)

    response = await client.delete(f"/v1/endpoints/{doomed['id']}", headers=tenant.headers)
    assert response.status == 200
    event_id = fast.received[0].headers["webhook-id"]
    row = await conn.fetchrow(
        "SELECT * FROM deliveries WHERE event_id = $1 AND endpoint_id = $2", event_id, kept["id"]
    )
    done = await settled(conn, row["id"])

    assert done["state"] == "succeeded"
    assert [a["status"] for a in await attempts_of(conn, row["id"])] == [200]
    assert (
        await conn.fetchval("SELECT count(*) FROM deliveries WHERE endpoint_id = $1", doomed["id"])
        == 0
    )
    # The worker goes on: a new lead reaches the endpoint that is left.
    await post_lead(client, tenant, email="grace@example.com")
    await fast.wait_for(2)
    assert lead["id"] != fast.received[1].json()["data"]["id"]


async def test_a_manual_retry_is_delivered_at_once(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[410, 200])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="ada@example.com")
    (first,) = await receiver.wait_for(1)
    row = await settled(conn, (await delivery_of_event(conn, first.headers["webhook-id"]))["id"])
    assert row["state"] == "failed"
    await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"enabled": True}, headers=tenant.headers
    )

    response = await client.post(f"/v1/deliveries/{row['id']}/retry", headers=tenant.headers)

    assert response.status == 200
    await receiver.wait_for(2, timeout=5)
    assert (await settled(conn, row["id"]))["state"] == "succeeded"
