"""Every statement on the ingest and delivery paths is index-driven, whatever plan the
statement cache could hold: the generic plan (the one a prepared statement falls back to),
on empty tables, on grown tables never analyzed, and after ANALYZE. `bench/plans.py` runs the
same check at a million leads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.plans import HOT, scans, seed
from gateway import db


@pytest.fixture
async def installed(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A new install: a database just migrated, its tables never written or analyzed (the
    suite's shared database keeps the statistics of earlier tests' rows after each TRUNCATE)."""
    await db.migrate(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    await db.init_connection(connection)
    yield connection
    await connection.close()


async def test_generic_plans_of_hot_statements_never_scan_a_growing_table(
    installed: asyncpg.Connection,
) -> None:
    conn = installed
    assert await scans(conn) == {name: [] for name in HOT}  # empty tables

    await seed(conn, 30_000)
    assert await scans(conn) == {name: [] for name in HOT}  # grown, never analyzed

    await conn.execute("ANALYZE")
    assert await scans(conn) == {name: [] for name in HOT}
