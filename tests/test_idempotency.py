"""Idempotency keys: replay byte for byte, 422 on a different request, 409 while in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway.idempotency import Key
from tests.conftest import Tenant, events_of

Client = TestClient[Any, Any]


async def test_same_key_and_request_replays_first_response_byte_for_byte(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "k-1"}
    first = await client.post("/v1/postback", json={"email": "i@example.com"}, headers=headers)
    first_body = await first.read()
    second = await client.post("/v1/postback", json={"email": "i@example.com"}, headers=headers)
    assert first.status == second.status == 201
    assert await second.read() == first_body
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(await events_of(conn, tenant.id)) == 1


async def test_x_idempotency_key_header_is_honoured(client: Client, tenant: Tenant) -> None:
    headers = {**tenant.headers, "X-Idempotency-Key": "k-x"}
    await client.post("/v1/postback", json={"email": "x@example.com"}, headers=headers)
    again = await client.post("/v1/postback", json={"email": "x@example.com"}, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_same_key_with_different_request_is_422(client: Client, tenant: Tenant) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "k-2"}
    await client.post("/v1/postback", json={"email": "a@example.com"}, headers=headers)
    other = await client.post("/v1/postback", json={"email": "b@example.com"}, headers=headers)
    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"


async def test_key_in_flight_is_409(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    # Another transaction holds the key's lock, exactly as a request still running would.
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", Key(tenant.id, "k-3", b"").lock_id)
        response = await client.post(
            "/v1/postback",
            json={"email": "f@example.com"},
            headers={**tenant.headers, "Idempotency-Key": "k-3"},
        )
        assert response.status == 409
        assert (await response.json())["error"]["code"] == "conflict"
    after = await client.post(
        "/v1/postback",
        json={"email": "f@example.com"},
        headers={**tenant.headers, "Idempotency-Key": "k-3"},
    )
    assert after.status == 201


async def test_keys_are_scoped_per_tenant(client: Client, tenant: Tenant, make_tenant: Any) -> None:
    other = await make_tenant("other")
    one = await client.post(
        "/v1/postback", json={"email": "a@example.com"},
        headers={**tenant.headers, "Idempotency-Key": "shared"},
    )  # fmt: skip
    two = await client.post(
        "/v1/postback", json={"email": "b@example.com"},
        headers={**other.headers, "Idempotency-Key": "shared"},
    )  # fmt: skip
    assert one.status == two.status == 201


async def test_failed_request_stores_nothing_and_may_be_retried(
    client: Client, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "k-4"}
    bad = await client.post("/v1/postback", json={"lead_id": "lead_nope"}, headers=headers)
    assert bad.status == 404
    good = await client.post("/v1/postback", json={"lead_id": "lead_nope"}, headers=headers)
    assert good.status == 404
    assert "Idempotent-Replayed" not in good.headers


async def test_expired_key_runs_the_request_afresh(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "k-5"}
    await client.post("/v1/postback", json={"email": "old@example.com"}, headers=headers)
    await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
    fresh = await client.post("/v1/postback", json={"email": "new@example.com"}, headers=headers)
    assert fresh.status == 201
    assert "Idempotent-Replayed" not in fresh.headers


async def test_overlong_key_is_400(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/postback",
        json={"email": "a@example.com"},
        headers={**tenant.headers, "Idempotency-Key": "k" * 300},
    )
    assert response.status == 400
    assert "Idempotency-Key" in (await response.json())["error"]["fields"]


async def test_fifty_concurrent_requests_with_one_key_run_the_change_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "burst"}
    body = {"email": "burst@example.com", "first_name": "B"}
    responses = await asyncio.gather(
        *(client.post("/v1/postback", json=body, headers=headers) for _ in range(50))
    )
    statuses = sorted(r.status for r in responses)
    created = [r for r in responses if r.status == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(created) == 1
    assert set(statuses) <= {201, 409}
    assert await conn.fetchval("SELECT count(*) FROM leads") == 1
    assert [e["type"] for e in await events_of(conn, tenant.id)] == ["lead.created"]
    replayed = [r for r in responses if r.headers.get("Idempotent-Replayed") == "true"]
    first = await created[0].read()
    assert all([await r.read() == first for r in replayed])
