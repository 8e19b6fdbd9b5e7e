"""API keys: the short cache of valid keys in each gateway process."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from gateway.app import create_app
from gateway.keys import REVOKE_KEY
from gateway.settings import Settings
from tests.conftest import Tenant


async def test_a_revoked_key_stops_working_once_the_cache_expires(
    aiohttp_client: Any, settings: Settings, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"auth_cache_seconds": 0.5}))
    )
    assert (await client.get("/v1/leads", headers=tenant.headers)).status == 200
    await conn.execute(REVOKE_KEY, tenant.key_id)
    # Within the cache's life the gateway has not asked Postgres again…
    assert (await client.get("/v1/leads", headers=tenant.headers)).status == 200
    await asyncio.sleep(0.6)
    # …and after it, it has.
    assert (await client.get("/v1/leads", headers=tenant.headers)).status == 401


async def test_an_invalid_key_is_never_remembered(
    aiohttp_client: Any, settings: Settings, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"auth_cache_seconds": 60}))
    )
    headers = {"Authorization": "Bearer lg_live_not-a-key"}
    assert (await client.get("/v1/leads", headers=headers)).status == 401
    assert (await client.get("/v1/leads", headers=headers)).status == 401
