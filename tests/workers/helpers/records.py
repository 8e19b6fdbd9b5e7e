"""Reading what Leadgate recorded: deliveries and their attempts, as stored in Postgres."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.workers.conftest import wait_until


async def delivery(conn: asyncpg.Connection, delivery_id: str) -> Any:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id)


async def delivery_of_event(conn: asyncpg.Connection, event_id: str) -> Any:
    return await conn.fetchrow("SELECT * FROM deliveries WHERE event_id = $1", event_id)


async def settled(conn: asyncpg.Connection, delivery_id: str, timeout: float = 10.0) -> Any:
    """The delivery once it is no longer pending (succeeded, failed or cancelled)."""

    async def done() -> bool:
        row = await delivery(conn, delivery_id)
        return row is not None and row["state"] != "pending"

    await wait_until(done, timeout)
    return await delivery(conn, delivery_id)


async def attempts_of(conn: asyncpg.Connection, delivery_id: str) -> list[Any]:
    """The delivery's attempts, first first."""
    return await conn.fetch(
        "SELECT attempt, started_at, status, latency_ms, outcome, error, response_body"
        " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id",
        delivery_id,
    )


async def count_in_state(conn: asyncpg.Connection, state: str) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM deliveries WHERE state = $1", state)
    return count


async def all_in_state(
    conn: asyncpg.Connection, state: str, expected: int, timeout: float = 10.0
) -> None:
    """Wait until `expected` deliveries are in `state`."""

    async def reached() -> bool:
        return await count_in_state(conn, state) == expected

    await wait_until(reached, timeout)
