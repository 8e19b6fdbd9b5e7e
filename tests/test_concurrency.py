"""Concurrent postbacks for one new lead make exactly one lead and one lead.created."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant, events_of

Client = TestClient[Any, Any]


def _cases(email: str, n: int) -> list[str]:
    """`n` spellings of one address differing only in letter case."""
    return [
        "".join(c.upper() if (i >> (j % 8)) & 1 else c for j, c in enumerate(email))
        for i in range(n)
    ]


async def test_fifty_concurrent_postbacks_same_new_email_make_one_lead(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    spellings = _cases("race@example.com", 50)
    assert len(set(spellings)) > 10
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/postback", json={"email": e, "first_name": "R"}, headers=tenant.headers
            )
            for e in spellings
        )
    )
    statuses = [r.status for r in responses]
    bodies = [await r.json() for r in responses]
    assert statuses.count(201) == 1
    assert statuses.count(200) == 49
    assert len({b["data"]["id"] for b in bodies}) == 1
    assert await conn.fetchval("SELECT count(*) FROM leads") == 1
    created = [e for e in await events_of(conn, tenant.id) if e["type"] == "lead.created"]
    assert len(created) == 1


async def test_concurrent_postbacks_sharing_several_keys_make_one_lead(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    """Each postback locks external id, email and phone; all share email and phone."""
    await conn.execute("UPDATE tenants SET match_phone = true WHERE id = $1", tenant.id)
    bodies = [
        {"email": "d@example.com", "phone": "+14155550100", "external_id": f"x{i % 3}"}
        for i in range(30)
    ]
    responses = await asyncio.gather(
        *(client.post("/v1/postback", json=b, headers=tenant.headers) for b in bodies)
    )
    assert sorted(r.status for r in responses) == [200] * 29 + [201]
    assert await conn.fetchval("SELECT count(*) FROM leads") == 1
