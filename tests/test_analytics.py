"""`GET /v1/analytics`: funnel by furthest stage, top sources and campaigns, days, deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant

Client = TestClient[Any, Any]


async def post(client: Client, tenant: Tenant, **fields: Any) -> None:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    assert response.status in (200, 201)


async def analytics(client: Client, tenant: Tenant, **params: str) -> Any:
    response = await client.get("/v1/analytics", params=params, headers=tenant.headers)
    body = await response.json()
    assert response.status == 200, body
    return body["data"]


async def test_funnel_counts_each_lead_up_to_its_furthest_stage(
    client: Client, tenant: Tenant
) -> None:
    await post(client, tenant, email="a@example.com")  # new
    await post(client, tenant, email="b@example.com", stage="qualified")
    await post(client, tenant, email="c@example.com", stage="won")
    await post(client, tenant, email="d@example.com", stage="proposal")
    await post(client, tenant, email="d@example.com", stage="lost")  # reached proposal
    await post(client, tenant, email="c@example.com", stage="new", force_stage=True)
    data = await analytics(client, tenant, range="7d")
    assert data["leads"] == 4
    assert [(s["stage"], s["leads"]) for s in data["funnel"]] == [
        ("new", 4), ("contacted", 3), ("qualified", 3), ("proposal", 2), ("won", 1),
    ]  # fmt: skip
    assert data["funnel"][3]["conversion"] == 0.5
    assert data["funnel"][4]["step_conversion"] == 0.5
    assert {s["name"]: s["leads"] for s in data["stages"]} == {
        "new": 2, "qualified": 1, "lost": 1,
    }  # fmt: skip


async def test_top_sources_and_campaigns_are_ranked(client: Client, tenant: Tenant) -> None:
    for i, (source, campaign) in enumerate(
        [("google", "spring"), ("google", "spring"), ("facebook", "spring"), ("google", None)]
    ):
        await post(client, tenant, email=f"s{i}@example.com", source=source, campaign=campaign)
    data = await analytics(client, tenant)
    assert data["top_sources"] == [
        {"name": "google", "leads": 3}, {"name": "facebook", "leads": 1},
    ]  # fmt: skip
    assert data["top_campaigns"][0] == {"name": "spring", "leads": 3}


async def test_range_bounds_the_leads_counted(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, email="old@example.com")
    await post(client, tenant, email="new@example.com")
    await conn.execute(
        "UPDATE leads SET created_at = now() - interval '20 days' WHERE email = 'old@example.com'"
    )
    assert (await analytics(client, tenant, range="7d"))["leads"] == 1
    assert (await analytics(client, tenant, range="30d"))["leads"] == 2
    days = (await analytics(client, tenant, range="30d"))["new_leads_per_day"]
    today = datetime.now(UTC).date()
    assert days == [
        {"date": (today - timedelta(days=20)).isoformat(), "leads": 1},
        {"date": today.isoformat(), "leads": 1},
    ]


async def test_from_and_to_select_a_window(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="w@example.com")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    assert (await analytics(client, tenant, **{"from": yesterday, "to": tomorrow}))["leads"] == 1
    assert (await analytics(client, tenant, to=yesterday))["leads"] == 0


async def test_delivery_success_rate_and_latency_percentiles(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO endpoints (id, tenant_id, url, secret)"
        " VALUES ('ep_a', $1, 'http://a.example/', 'whsec_x')",
        tenant.id,
    )
    await post(client, tenant, email="d@example.com")
    delivery_id = await conn.fetchval("SELECT id FROM deliveries")
    await conn.execute(
        """INSERT INTO delivery_attempts
             (delivery_id, tenant_id, attempt, started_at, status, latency_ms, outcome)
           SELECT $2, $1, g, now(), 200, g,
                  CASE WHEN g <= 75 THEN 'succeeded' ELSE 'retrying' END
           FROM generate_series(1, 100) g""",
        tenant.id,
        delivery_id,
    )
    deliveries = (await analytics(client, tenant))["deliveries"]
    assert deliveries["attempts"] == 100
    assert deliveries["succeeded"] == 75
    assert deliveries["success_rate"] == 0.75
    assert deliveries["latency_ms"]["p50"] == 50.5


async def test_empty_range_has_no_rates(client: Client, tenant: Tenant) -> None:
    data = await analytics(client, tenant)
    assert data["leads"] == 0
    assert data["funnel"][0] == {"stage": "new", "leads": 0, "conversion": None,
                                 "step_conversion": None}  # fmt: skip
    assert data["deliveries"]["success_rate"] is None


async def test_bad_range_is_400(client: Client, tenant: Tenant) -> None:
    for params in ({"range": "1y"}, {"range": "7d", "to": "2026-01-01T00:00:00Z"},
                   {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}):  # fmt: skip
        response = await client.get("/v1/analytics", params=params, headers=tenant.headers)
        assert response.status == 400, params


async def test_another_tenants_leads_are_not_counted(
    client: Client, tenant: Tenant, make_tenant: Any
) -> None:
    other = await make_tenant("other")
    await post(client, other, email="x@example.com")
    assert (await analytics(client, tenant))["leads"] == 0


async def test_a_to_too_early_for_its_default_window_is_400(client: Client, tenant: Tenant) -> None:
    response = await client.get(
        "/v1/analytics", params={"to": "0001-01-01T09:11:22Z"}, headers=tenant.headers
    )
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"to": "too early"}
