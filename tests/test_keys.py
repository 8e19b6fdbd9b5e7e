"""API keys: each gateway process's key cache, emptied by every change announced in Postgres.

A change made "silently" (with `session_replication_role = replica`, which keeps schema.sql's
triggers from announcing it) shows what the cache holds; an ordinary change shows that the
announcement empties it; killing the listening connection shows that a cache nobody keeps
fresh is not trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.appkeys import KEYS
from gateway.invalidation import APPLICATION_NAME
from gateway.keys import REVOKE_KEY, KeyCache, Principal
from gateway.settings import Settings
from gateway.tenants import Pipeline, update_tenant
from tests.conftest import Servers, Tenant

Client = TestClient[Any, Any]


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def silently(conn: asyncpg.Connection, query: str, *args: Any) -> None:
    """Change a row without announcing it, as if the announcement were lost."""
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(query, *args)


REVOKE_SILENTLY = "UPDATE api_keys SET revoked_at = now() WHERE id = $1"
RESTORE_SILENTLY = "UPDATE api_keys SET revoked_at = NULL WHERE id = $1"


@pytest.fixture
async def cached(
    aiohttp_client: Callable[..., Awaitable[Client]], settings: Settings, conn: asyncpg.Connection
) -> Client:
    """A gateway whose cache keeps keys for a minute, once its listener is on the channel."""
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"auth_cache_seconds": 60}))
    )
    await wait_for(lambda: client.app[KEYS].trusted)
    return client


def cache_of(client: Client) -> KeyCache:
    app: web.Application = client.app
    return app[KEYS]


async def status(client: Client, tenant: Tenant) -> int:
    return (await client.get("/v1/leads", headers=tenant.headers)).status


async def test_the_cache_answers_for_a_key_without_asking_postgres(
    cached: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    assert await status(cached, tenant) == 200

    await silently(conn, REVOKE_SILENTLY, tenant.key_id)

    assert await status(cached, tenant) == 200


async def test_a_revocation_empties_the_cache_and_the_key_is_refused(
    cached: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    assert await status(cached, tenant) == 200
    before = cache_of(cached).generation

    await conn.execute(REVOKE_KEY, tenant.key_id)

    await wait_for(lambda: cache_of(cached).generation != before)
    assert await status(cached, tenant) == 401


async def test_a_tenants_new_pipeline_holds_once_announced(
    cached: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    async def stage_paid() -> int:
        response = await cached.post(
            "/v1/postback", json={"email": "p@example.com", "stage": "Paid"}, headers=tenant.headers
        )
        return response.status

    assert await stage_paid() == 400
    await silently(conn, "UPDATE tenants SET stages = '{Started,Paid}' WHERE id = $1", tenant.id)
    assert await stage_paid() == 400  # the cached principal still has the old pipeline
    before = cache_of(cached).generation

    await update_tenant(conn, tenant.id, stages=("Started", "Paid"))

    await wait_for(lambda: cache_of(cached).generation != before)
    assert await stage_paid() == 201


@contextlib.asynccontextmanager
async def connections_refused(servers: Servers, conn: asyncpg.Connection) -> AsyncIterator[None]:
    """No new connection to the test database (those open stay), like a Postgres restarting.

    Only a session of another database may say so: template1's."""
    name = await conn.fetchval("SELECT current_database()")
    other = await asyncpg.connect(servers.database_url, database="template1")
    try:
        await other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            yield
        finally:
            await other.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await other.close()


async def test_while_the_listener_is_cut_off_the_cache_is_bypassed_then_trusted_again(
    cached: Client, tenant: Tenant, conn: asyncpg.Connection, servers: Servers
) -> None:
    cache = cache_of(cached)
    assert await status(cached, tenant) == 200

    async with connections_refused(servers, conn):
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            APPLICATION_NAME,
        )
        assert killed == 1
        await wait_for(lambda: not cache.trusted)
        # Every request now asks Postgres: a change nobody announced is seen at once.
        await silently(conn, REVOKE_SILENTLY, tenant.key_id)
        assert await status(cached, tenant) == 401
        await silently(conn, RESTORE_SILENTLY, tenant.key_id)
        assert await status(cached, tenant) == 200
        await silently(conn, REVOKE_SILENTLY, tenant.key_id)
        assert await status(cached, tenant) == 401  # the 200 just before was not remembered
        await silently(conn, RESTORE_SILENTLY, tenant.key_id)
        assert not cache.trusted

    # The listener reconnects by itself; from then on the cache is trusted again.
    await wait_for(lambda: cache.trusted)
    assert await status(cached, tenant) == 200
    await silently(conn, REVOKE_SILENTLY, tenant.key_id)
    assert await status(cached, tenant) == 200


async def test_an_invalid_key_is_never_remembered(
    cached: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {"Authorization": "Bearer lg_live_not-a-key"}
    assert (await cached.get("/v1/leads", headers=headers)).status == 401
    assert (await cached.get("/v1/leads", headers=headers)).status == 401


def test_a_lookup_that_began_before_an_invalidation_is_not_stored() -> None:
    cache = KeyCache(ttl=60)
    cache.trust(True)
    principal = Principal("key_1", "ten_1", frozenset(), Pipeline(("new",), ()), False, None, {})
    began = cache.generation

    cache.invalidate()  # a change announced while the lookup was in flight
    cache.put(b"digest", principal, began)

    assert cache.get(b"digest") is None
    cache.put(b"digest", principal, cache.generation)
    assert cache.get(b"digest") == principal


def test_an_untrusted_cache_stores_nothing_and_answers_nothing() -> None:
    cache = KeyCache(ttl=60)
    principal = Principal("key_1", "ten_1", frozenset(), Pipeline(("new",), ()), False, None, {})

    cache.put(b"digest", principal, cache.generation)

    assert cache.get(b"digest") is None
