"""Counting leads: `GET /v1/leads/stage-counts`, and a list that skips its total."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway.tenants import update_tenant
from tests.conftest import Tenant, TenantFactory
from tests.leads.test_api import create, page

Client = TestClient[Any, Any]


async def counts(client: Client, tenant: Tenant, params: dict[str, str] | None = None) -> Any:
    response = await client.get(
        "/v1/leads/stage-counts", params=params or {}, headers=tenant.headers
    )
    assert response.status == 200, await response.text()
    return await response.json()


async def test_every_stage_is_counted_in_pipeline_order_with_zeros(
    client: Client, tenant: Tenant
) -> None:
    await create(client, tenant, email="a@example.com")
    await create(client, tenant, email="b@example.com", stage="won")
    await create(client, tenant, email="c@example.com", stage="won")
    body = await counts(client, tenant)
    assert body == {
        "data": [{"stage": "new", "leads": 1}, {"stage": "contacted", "leads": 0},
                 {"stage": "qualified", "leads": 0}, {"stage": "proposal", "leads": 0},
                 {"stage": "won", "leads": 2}, {"stage": "lost", "leads": 0}],
        "total": 3,
    }  # fmt: skip


async def test_counts_take_the_list_filters(client: Client, tenant: Tenant) -> None:
    await create(client, tenant, email="a@example.com", source="google", vertical="solar")
    await create(client, tenant, email="b@example.com", source="google", vertical="roofing")
    await create(client, tenant, email="c@example.com", source="bing", vertical="solar")
    body = await counts(client, tenant, {"source": "google", "custom.vertical": "solar"})
    assert body["total"] == 1
    assert (await counts(client, tenant, {"search": "b@"}))["total"] == 1


async def test_a_stage_removed_from_the_pipeline_is_still_counted(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await create(client, tenant, email="a@example.com", stage="proposal")
    await update_tenant(conn, tenant.id, stages=("new", "won"))
    body = await counts(client, tenant)
    assert [c["stage"] for c in body["data"]] == ["new", "won", "lost", "proposal"]
    assert body["data"][-1]["leads"] == 1


async def test_another_tenants_leads_are_not_counted(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    await create(client, other, email="a@example.com")
    assert (await counts(client, tenant))["total"] == 0


async def test_bad_filters_are_a_400_naming_them(client: Client, tenant: Tenant) -> None:
    for params in ({"from": "yesterday"}, {"limit": "5"}):
        response = await client.get("/v1/leads/stage-counts", params=params, headers=tenant.headers)
        assert response.status == 400
        assert set((await response.json())["error"]["fields"]) == set(params)


async def test_a_list_asked_not_to_count_has_a_null_total_and_the_same_page(
    client: Client, tenant: Tenant
) -> None:
    await create(client, tenant, email="a@example.com")
    counted = await page(client, tenant, [("limit", "1")])
    uncounted = await page(client, tenant, [("limit", "1"), ("total", "false")])
    assert counted["total"] == 1
    assert uncounted["total"] is None
    assert uncounted["data"] == counted["data"]
