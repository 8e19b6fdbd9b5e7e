"""Postgres: the connection pool, what its errors mean, and the way in to the schema migration
(`gateway.migrations`).

jsonb columns are exchanged as Python objects through orjson, so no query encodes JSON by hand.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from gateway import migrations
from gateway.errors import Conflict

# A connection of our own or one borrowed from the pool: queries take either.
Conn = asyncpg.Connection | PoolConnectionProxy

# Transaction-scoped locks on keys (matching keys of leads, ...), taken in ascending order so
# that two transactions sharing keys cannot deadlock on them.
LOCK_KEYS = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k"

# Which field a unique index protects, and of what, to name them in a 409.
UNIQUE_FIELDS = {
    "leads_email_tenant": ("email", "lead"),
    "leads_external_id_tenant": ("external_id", "lead"),
}

# SQLSTATE classes that mean "Postgres is not there right now" rather than "this request is
# wrong": connection exceptions (08), insufficient resources (53), operator intervention such as
# a shutdown or a crash restart (57), system errors (58).
_UNAVAILABLE_CLASSES = ("08", "53", "57", "58")


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


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, statement_cache_size: int = 100
) -> asyncpg.Pool:
    """The pool; `statement_cache_size=0` (LEADGATE_DB_STATEMENT_CACHE_SIZE) when `dsn` goes
    through PgBouncer in transaction mode, where a named prepared statement made on one server
    connection would be looked for on another (docs/SCALING.md)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        reset=_reset,
        statement_cache_size=statement_cache_size,
    )
    assert pool is not None
    return pool


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` says Postgres is out of reach (down, restarting, refusing connections)."""
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate or "")[:2] in _UNAVAILABLE_CLASSES
    return isinstance(error, OSError | asyncpg.InterfaceError | TimeoutError)


def conflict_of(error: asyncpg.UniqueViolationError) -> Conflict:
    """A unique-index violation as the 409 that names the field another row holds."""
    field, noun = UNIQUE_FIELDS.get(error.constraint_name or "", ("id", "object"))
    return Conflict(
        f"another {noun} of this tenant already has this {field}",
        fields={field: f"already used by another {noun}"},
    )


async def lock_keys(conn: Conn, lock_ids: list[int]) -> None:
    if lock_ids:
        await conn.execute(LOCK_KEYS, sorted(set(lock_ids)))


async def migrate(dsn: str) -> None:
    """Bring the schema to this release's version (`gateway.migrations`): idempotent, and safe
    to run from several replicas at once."""
    await migrations.migrate(dsn)
