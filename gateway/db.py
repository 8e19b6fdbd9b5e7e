"""Postgres: the connection pool and the schema migration.

jsonb columns are exchanged as Python objects through orjson, so no query encodes JSON by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schema.sql"

# A fixed advisory-lock id so that two `leadgate migrate` runs never apply the schema at once.
_MIGRATE_LOCK = 0x1EAD6A7E

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
    """Apply schema.sql; idempotent, so running it twice changes nothing."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            await conn.execute(SCHEMA_PATH.read_text())
    finally:
        await conn.close()
