"""Postgres: the connection pool, and the way in to the schema migration (`gateway.migrations`).

jsonb columns are exchanged as Python objects through orjson, so no query encodes JSON by hand.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from gateway import migrations

# A connection of our own or one borrowed from the pool: queries take either.
Conn = asyncpg.Connection | PoolConnectionProxy


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """What a released connection needs before reuse, and no more.

    asyncpg's default reset runs four statements (unlock advisory locks, close cursors,
    unlisten, reset settings) on every release: a round trip and a transaction per query.
    Leadgate takes only transaction-scoped advisory locks, opens no cursors outside a
    transaction, listens to nothing and sets nothing per session; so only a transaction left
    open by an error needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, reset=_reset
    )
    assert pool is not None
    return pool


async def migrate(dsn: str) -> None:
    """Bring the schema to this release's version (`gateway.migrations`): idempotent, and safe
    to run from several replicas at once."""
    await migrations.migrate(dsn)
