"""`GET /v1/stats` from the account's counters, and the monthly quota on new leads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway import migrations
from gateway.app import create_app
from gateway.settings import Settings
from gateway.tenants import update_tenant
from tests.conftest import Tenant, TenantFactory
from tests.scoring.helpers import Client, post


async def stats(client: Client, tenant: Tenant) -> Any:
    response = await client.get("/v1/stats", headers=tenant.headers)
    body = await response.json()
    assert response.status == 200, body
    return body["data"]


async def test_stats_count_received_and_converted_leads_once_each(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    await post(client, other, email="x@example.com", stage="won")
    for i in range(4):
        await post(client, tenant, email=f"s{i}@example.com")
    await post(client, tenant, email="s0@example.com", stage="won")  # converts by postback
    lead = await post(client, tenant, email="s1@example.com")
    response = await client.patch(f"/v1/leads/{lead['id']}", json={"stage": "won"},
                                  headers=tenant.headers)  # fmt: skip
    assert response.status == 200
    # Back and forward again: still one conversion.
    await post(client, tenant, email="s0@example.com", stage="new", force_stage=True)
    await post(client, tenant, email="s0@example.com", stage="won")
    data = await stats(client, tenant)
    assert data == {
        "leads_received": 4, "leads_converted": 2, "conversion_rate": 0.5,
        "leads_this_month": 4, "month": datetime.now(UTC).strftime("%Y-%m"),
        "quota_this_month": None, "quota_remaining": None, "converted_stages": ["won"],
    }  # fmt: skip


async def test_converted_stages_chosen_per_tenant(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await update_tenant(conn, tenant.id, converted_stages=("Qualified", "proposal"))
    await post(client, tenant, email="q@example.com", stage="qualified")
    await post(client, tenant, email="q@example.com", stage="proposal")
    await post(client, tenant, email="w@example.com", stage="won")
    await post(client, tenant, email="n@example.com")
    data = await stats(client, tenant)
    assert (data["leads_converted"], data["conversion_rate"]) == (1, 0.3333)
    assert data["converted_stages"] == ["qualified", "proposal"]


async def test_month_is_utc_and_earlier_months_count_all_time(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO tenant_monthly_counts (tenant_id, month, shard, created, converted)"
        " VALUES ($1, $2, 3, 10, 4)",
        tenant.id,
        date(2020, 1, 1),
    )
    await post(client, tenant, email="m@example.com")
    data = await stats(client, tenant)
    assert (data["leads_received"], data["leads_converted"], data["leads_this_month"]) == (
        11, 4, 1,
    )  # fmt: skip


async def test_past_the_quota_new_leads_get_429_while_matches_still_update(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await update_tenant(conn, tenant.id, monthly_quota=2)
    await post(client, tenant, email="a@example.com")
    await post(client, tenant, "/v1/leads", email="b@example.com")
    for path in ("/v1/postback", "/v1/leads"):
        response = await client.post(path, json={"email": "c@example.com"},
                                     headers=tenant.headers)  # fmt: skip
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "quota_exceeded"
        assert int(response.headers["Retry-After"]) > 0
    matched = await post(client, tenant, email="a@example.com", company="Still Updated")
    assert matched["company"] == "Still Updated"
    data = await stats(client, tenant)
    assert (data["quota_this_month"], data["quota_remaining"], data["leads_this_month"]) == (
        2, 0, 2,
    )  # fmt: skip
    assert await conn.fetchval("SELECT count(*) FROM leads") == 2
    await update_tenant(conn, tenant.id, monthly_quota=0)  # 0 removes the quota
    await post(client, tenant, email="c@example.com")


async def test_quota_is_exact_under_concurrent_postbacks_from_two_gateways(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    tenant: Tenant,
    conn: asyncpg.Connection,
) -> None:
    """Two gateway processes' batchers (two apps, two pools) at the quota's edge."""
    await update_tenant(conn, tenant.id, monthly_quota=7)
    await conn.execute(
        "INSERT INTO leads (id, tenant_id, email, stage)"
        " VALUES ('lead_old', $1, 'old@x.io', 'new')",
        tenant.id,
    )
    gateways = [await aiohttp_client(create_app(settings)) for _ in range(2)]
    responses = await asyncio.gather(*(
        gateways[i % 2].post("/v1/postback", json={"email": f"q{i}@example.com"},
                             headers=tenant.headers)
        for i in range(40)
    ), *(
        gateways[i % 2].post("/v1/postback", json={"email": "old@x.io", "first_name": f"F{i}"},
                             headers=tenant.headers)
        for i in range(6)
    ))  # fmt: skip
    statuses = sorted(r.status for r in responses)
    assert statuses.count(201) == 7
    assert statuses.count(429) == 33
    assert statuses.count(200) == 6
    assert await conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant.id) == 8
    assert (await stats(gateways[0], tenant))["leads_this_month"] == 7


async def test_the_migration_that_adds_the_counters_counts_the_leads_already_there(
    fresh_database: str,
) -> None:
    """An install from before the counters: its leads are counted once, when the table is made."""
    await migrations.migrate(fresh_database)
    db = await asyncpg.connect(fresh_database)
    try:
        await db.execute("DROP TABLE tenant_monthly_counts")  # as before schema version 3
        await db.execute("""
            INSERT INTO tenants (id, name) VALUES ('ten_old', 'old');
            INSERT INTO leads (id, tenant_id, stage, furthest_stage, created_at, updated_at)
            VALUES ('lead_a', 'ten_old', 'new', 'new', '2026-01-15Z', '2026-01-15Z'),
                   ('lead_b', 'ten_old', 'lost', 'won', '2026-01-20Z', '2026-02-03Z'),
                   ('lead_c', 'ten_old', 'won', 'won', '2026-02-01Z', '2026-02-01Z');
            UPDATE schema_version SET version = version - 1;
        """)  # fmt: skip
        await migrations.migrate(fresh_database)
        rows = await db.fetch(
            "SELECT month, created, converted FROM tenant_monthly_counts ORDER BY month"
        )
        assert [tuple(r) for r in rows] == [
            (date(2026, 1, 1), 2, 0), (date(2026, 2, 1), 1, 2),
        ]  # fmt: skip
        await db.execute("UPDATE schema_version SET version = version - 1")
        await migrations.migrate(fresh_database)  # schema.sql applied again: counted once
        assert await db.fetchval("SELECT sum(created) FROM tenant_monthly_counts") == 3
    finally:
        await db.close()
