"""Delivery to real receivers: signed, retried by the schedule, every attempt on record."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.conftest import Tenant
from tests.receivers import Receiver
from tests.workers.conftest import ReceiverFactory, add_endpoint, delivery_of, post_lead, wait_until

Client = TestClient[Any, Any]


async def test_lead_created_arrives_signed_with_standard_webhooks(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url)
    lead = await post_lead(client, tenant, email="ada@example.com")
    (got,) = await receiver.wait_for(1)
    payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "lead.created"
    assert payload["data"]["id"] == lead["id"]
    assert got.headers["webhook-id"] == payload["id"]
    assert got.headers["Content-Type"] == "application/json"


async def test_failing_receiver_gets_three_attempts_then_success(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[500, 500, 200])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="r@example.com")
    got = await receiver.wait_for(3)
    assert len(set(receiver.ids())) == 1  # one webhook-id across retries
    for request in got:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)

    async def succeeded() -> bool:
        row = await delivery_of(conn)
        return row is not None and row["state"] == "succeeded"

    await wait_until(succeeded)
    row = await delivery_of(conn)
    assert row["attempt_count"] == 3
    attempts = await conn.fetch(
        "SELECT attempt, status, outcome, response_body FROM delivery_attempts"
        " WHERE delivery_id = $1 ORDER BY id",
        row["id"],
    )
    assert [tuple(a) for a in attempts] == [
        (1, 500, "retrying", "status 500"),
        (2, 500, "retrying", "status 500"),
        (3, 200, "succeeded", "status 200"),
    ]
