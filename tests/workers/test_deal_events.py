"""Deal events reach a `deal.*` endpoint through the outbox, signed, from a real worker; an
endpoint for lead events gets none of them."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.conftest import Tenant
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until

Client = TestClient[Any, Any]


async def test_deal_events_are_delivered_to_a_deal_wildcard_endpoint_in_order(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    deals = await receiver_factory()
    leads = await receiver_factory()
    endpoint = await add_endpoint(client, tenant, deals.url, event_types=["deal.*"], ordered=True)
    await add_endpoint(client, tenant, leads.url, event_types=["lead.*"])
    lead = await post_lead(client, tenant, email="ada@example.com")
    response = await client.post(
        "/v1/deals",
        json={"title": "Engine", "value": 1000, "stage": "proposal", "lead_id": lead["id"]},
        headers=tenant.headers,
    )
    deal = (await response.json())["data"]
    path = f"/v1/deals/{deal['id']}"
    await client.patch(path, json={"stage": "won", "title": "Engine No. 1"}, headers=tenant.headers)
    await client.delete(path, headers=tenant.headers)

    got = await deals.wait_for(4)
    payloads = [Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in got]
    assert [p["type"] for p in payloads] == [
        "deal.created", "deal.updated", "deal.stage_changed", "deal.deleted",
    ]  # fmt: skip
    assert payloads[0]["data"] == deal
    assert payloads[2]["data"]["previous_stage"] == "proposal"
    assert payloads[2]["data"]["stage"] == "won"
    assert payloads[3]["data"]["deleted"] is True

    async def all_succeeded() -> bool:
        states = await conn.fetch("SELECT state FROM deliveries WHERE event_type LIKE 'deal.%'")
        return len(states) == 4 and {r["state"] for r in states} == {"succeeded"}

    await wait_until(all_succeeded)
    await leads.wait_for(1)
    assert {r.json()["type"] for r in leads.received} == {"lead.created"}
