"""Every statement on the ingest and delivery paths is index-driven, whatever plan the
statement cache could hold: the generic plan (the one a prepared statement falls back to),
on empty tables, on grown tables never analyzed, and after ANALYZE. `bench/plans.py` runs the
same check at a million leads."""

from __future__ import annotations

import asyncpg

from bench.plans import HOT, scans, seed


async def test_generic_plans_of_hot_statements_never_scan_a_growing_table(
    conn: asyncpg.Connection,
) -> None:
    assert await scans(conn) == {name: [] for name in HOT}  # empty tables

    await seed(conn, 30_000)
    assert await scans(conn) == {name: [] for name in HOT}  # grown, never analyzed

    await conn.execute("ANALYZE")
    assert await scans(conn) == {name: [] for name in HOT}
