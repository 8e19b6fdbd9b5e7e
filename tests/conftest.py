"""Test fixtures: real Postgres and Redis, a fresh state per test, and an API client.

The servers come from `LEADGATE_TEST_DATABASE_URL` / `LEADGATE_TEST_REDIS_URL` when set (CI may
point them at services it runs); otherwise the suite starts throwaway embedded servers of its
own under a temporary folder, so `make test` needs nothing installed on the machine and never
touches a database or Redis it did not create.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from gateway import db, embedded
from gateway.app import create_app
from gateway.crypto import Cipher, generate_key
from gateway.keys import create_key
from gateway.settings import Settings
from gateway.tenants import create_tenant

# Settings come from the fixtures alone, never from the environment of whoever runs the tests.
for name in [n for n in os.environ if n.startswith("LEADGATE_") and "_TEST_" not in n]:
    del os.environ[name]

# The key secrets are encrypted with at rest, one per test session; processes a test starts are
# given the same one (LEADGATE_SECRET_KEYS), so they read what the test's app wrote.
TEST_SECRET_KEYS = generate_key()

TABLES = (
    "delivery_attempts", "deliveries", "endpoints", "idempotency_keys", "events",
    "stage_history", "deals", "leads", "mappings", "api_keys", "tenants", "scoring_rescores",
    "tenant_monthly_counts",
)  # fmt: skip


@dataclass(frozen=True)
class Servers:
    database_url: str
    redis_url: str


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    database_url = os.environ.get("LEADGATE_TEST_DATABASE_URL")
    redis_url = os.environ.get("LEADGATE_TEST_REDIS_URL")
    if database_url and redis_url:
        asyncio.run(db.migrate(database_url))
        yield Servers(database_url, redis_url)
        return
    with tempfile.TemporaryDirectory(prefix="leadgate-test-") as tmp:
        running = embedded.start(Path(tmp), durable=False)
        try:
            asyncio.run(db.migrate(running.database_url))
            yield Servers(running.database_url, running.redis_url)
        finally:
            running.stop()


@pytest.fixture
def settings(servers: Servers) -> Settings:
    # Keys are looked up on every request, so a test sees a revocation or a tenant change at
    # once; tests/test_keys.py proves the cache itself.
    return Settings(
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        log_format="json",
        auth_cache_seconds=0,
        secret_keys=TEST_SECRET_KEYS,
    )


@pytest.fixture
def cipher(settings: Settings) -> Cipher:
    """What the app under test encrypts secrets with, to read them as stored."""
    return Cipher.from_settings(settings)


@pytest.fixture
async def conn(servers: Servers) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a freshly emptied database (and a flushed Redis)."""
    connection = await asyncpg.connect(servers.database_url)
    await db.init_connection(connection)
    await connection.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
    redis = aioredis.from_url(servers.redis_url)
    await redis.flushdb()
    await redis.aclose()
    yield connection
    await connection.close()


@pytest.fixture
async def client(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    conn: asyncpg.Connection,
) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(settings))


@dataclass(frozen=True)
class Tenant:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


TenantFactory = Callable[..., Awaitable[Tenant]]


@pytest.fixture
def make_tenant(conn: asyncpg.Connection) -> TenantFactory:
    """Make a tenant with a key of the given scopes (all three by default)."""

    async def make(
        name: str = "acme", scopes: tuple[str, ...] = ("ingest", "read", "manage")
    ) -> Tenant:
        row = await create_tenant(conn, name)
        key_row, key = await create_key(conn, row["id"], list(scopes))
        return Tenant(row["id"], key, key_row["id"])

    return make


@pytest.fixture
async def tenant(make_tenant: TenantFactory) -> Tenant:
    return await make_tenant()


async def add_key(conn: asyncpg.Connection, tenant: Tenant, scopes: list[str]) -> str:
    _, key = await create_key(conn, tenant.id, scopes)
    return key


async def events_of(conn: asyncpg.Connection, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's outbox, oldest first, each event's body decoded."""
    import orjson

    rows = await conn.fetch(
        "SELECT id, type, lead_id, body FROM events WHERE tenant_id = $1 ORDER BY id", tenant_id
    )
    return [{**dict(r), "body": orjson.loads(r["body"])} for r in rows]


@pytest.fixture
async def fresh_database(servers: Servers) -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server, dropped afterwards."""
    name = f"leadgate_migrate_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(servers.database_url)._replace(path=f"/{name}"))
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()
