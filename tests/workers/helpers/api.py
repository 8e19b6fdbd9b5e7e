"""Calls to the Leadgate API that the delivery tests share."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.workers.conftest import post_lead

Client = TestClient[Any, Any]


async def publish(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    """`POST /v1/events`: a custom event, scheduled with `delay` or `deliver_at`."""
    response = await client.post("/v1/events", json=fields, headers=tenant.headers)
    body = await response.json()
    assert response.status == 201, body
    event: dict[str, Any] = body["data"]
    return event


async def get_endpoint(client: Client, tenant: Tenant, endpoint_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/endpoints/{endpoint_id}", headers=tenant.headers)
    body = await response.json()
    assert response.status == 200, body
    endpoint: dict[str, Any] = body["data"]
    return endpoint


async def post_leads(client: Client, tenant: Tenant, count: int, batch: int = 25) -> list[str]:
    """Post `count` distinct leads, `batch` at a time; returns their ids."""
    ids: list[str] = []
    for start in range(0, count, batch):
        leads = await asyncio.gather(
            *(
                post_lead(client, tenant, email=f"lead{i}@example.com")
                for i in range(start, min(start + batch, count))
            )
        )
        ids.extend(lead["id"] for lead in leads)
    return ids
