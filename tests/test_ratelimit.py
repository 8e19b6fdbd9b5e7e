"""Per-key rate limits: headers on every authenticated response, 429 past the limit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.embedded import free_port
from gateway.settings import Settings
from tests.conftest import TEST_SECRET_KEYS, Tenant, add_key

Client = TestClient[Any, Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit": 3})


async def get(client: Client, tenant: Tenant) -> Any:
    return await client.get("/v1/leads", headers=tenant.headers)


async def test_headers_count_down_on_every_authenticated_response(
    client: Client, tenant: Tenant
) -> None:
    responses = [await get(client, tenant) for _ in range(3)]
    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0"]
    for r in responses:
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["RateLimit-Policy"] == '"per-key";q=3;w=60'
        reset = int(r.headers["X-RateLimit-Reset"])
        assert time.time() < reset <= time.time() + 61
    assert responses[2].headers["RateLimit"].startswith('"per-key";r=0;t=')


async def test_request_past_the_limit_is_429_with_retry_after(
    client: Client, tenant: Tenant
) -> None:
    for _ in range(3):
        await get(client, tenant)
    refused = await get(client, tenant)
    body = await refused.json()
    assert refused.status == 429
    assert body["error"]["code"] == "rate_limited"
    # A quota of 3 a minute comes back one request every 20 seconds.
    assert 19 <= int(refused.headers["Retry-After"]) <= 20
    assert refused.headers["X-RateLimit-Remaining"] == "0"


async def test_requests_checked_together_are_each_judged_in_turn(
    client: Client, tenant: Tenant
) -> None:
    # Sent at once, their checks share one call to Redis: the limit still holds per request.
    responses = await asyncio.gather(*(get(client, tenant) for _ in range(8)))

    assert sorted(r.status for r in responses) == [200] * 3 + [429] * 5
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses)
    assert remaining == [0] * 6 + [1, 2]


async def test_limits_are_per_key(client: Client, tenant: Tenant, conn: asyncpg.Connection) -> None:
    other_key = await add_key(conn, tenant, ["read"])
    for _ in range(4):
        await get(client, tenant)
    fresh = await client.get("/v1/leads", headers={"X-API-Key": other_key})
    assert fresh.status == 200
    assert fresh.headers["X-RateLimit-Remaining"] == "2"


async def test_error_responses_carry_the_headers_too(client: Client, tenant: Tenant) -> None:
    response = await client.get("/v1/leads/lead_missing", headers=tenant.headers)
    assert response.status == 404
    assert response.headers["X-RateLimit-Remaining"] == "2"


async def test_tenant_limit_overrides_the_default(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE tenants SET rate_limit = 10 WHERE id = $1", tenant.id)
    response = await get(client, tenant)
    assert response.headers["X-RateLimit-Limit"] == "10"


async def test_scope_limit_overrides_the_tenant_limit(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        """UPDATE tenants SET rate_limit = 10, scope_rate_limits = '{"ingest": 50}'
           WHERE id = $1""",
        tenant.id,
    )
    read = await get(client, tenant)
    ingest = await client.post(
        "/v1/postback", json={"email": "s@example.com"}, headers=tenant.headers
    )
    assert read.headers["X-RateLimit-Limit"] == "10"
    assert ingest.headers["X-RateLimit-Limit"] == "50"


async def test_ingestion_is_accepted_when_redis_is_down(
    aiohttp_client: Any, settings: Settings, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = await aiohttp_client(create_app(dead))
    response = await client.post(
        "/v1/postback", json={"email": "open@example.com"}, headers=tenant.headers
    )
    assert response.status == 201
    assert "X-RateLimit-Limit" not in response.headers
    assert await conn.fetchval("SELECT count(*) FROM leads") == 1


async def test_unauthenticated_routes_carry_no_limit_headers(client: Client) -> None:
    response = await client.get("/healthz")
    assert "X-RateLimit-Limit" not in response.headers


async def test_limit_holds_across_two_gateway_processes(
    servers: Any, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "LEADGATE_DATABASE_URL": servers.database_url,
        "LEADGATE_REDIS_URL": servers.redis_url,
        "LEADGATE_RATE_LIMIT": "5",
        "LEADGATE_LOG_FORMAT": "json",
        "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
    }
    leadgate = os.path.join(os.path.dirname(sys.executable), "leadgate")
    procs = [
        subprocess.Popen(
            [leadgate, "serve"],
            env={**env, "LEADGATE_PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for port in ports
    ]
    try:
        async with aiohttp.ClientSession() as http:
            for port in ports:
                async with asyncio.timeout(20):
                    while True:
                        try:
                            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.1)
            statuses = []
            for i in range(6):
                url = f"http://127.0.0.1:{ports[i % 2]}/v1/leads"
                async with http.get(url, headers=tenant.headers) as r:
                    statuses.append(r.status)
        assert statuses == [200, 200, 200, 200, 200, 429]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


async def test_a_limit_of_zero_turns_rate_limiting_off(
    aiohttp_client: Any, settings: Settings, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    client = await aiohttp_client(create_app(settings.model_copy(update={"rate_limit": 0})))
    statuses = [(await get(client, tenant)).status for _ in range(5)]
    response = await get(client, tenant)
    assert statuses == [200] * 5
    assert "X-RateLimit-Limit" not in response.headers


async def test_a_limit_too_high_to_reach_still_counts(
    aiohttp_client: Any, settings: Settings, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"rate_limit": 1_000_000_000}))
    )
    first, second = await get(client, tenant), await get(client, tenant)
    assert first.headers["X-RateLimit-Limit"] == "1000000000"
    assert int(second.headers["X-RateLimit-Remaining"]) >= 999_999_998
