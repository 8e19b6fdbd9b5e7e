"""Every statement on the ingest and delivery paths is index-driven in the plan a prepared
statement falls back to (the generic plan, made without its parameters' values): on grown
tables never analyzed, and after ANALYZE. On tables Postgres has never seen a row in, a few
updates by id are planned as scans of the (empty) table; those plans, cached by connections
that prepared them then, are made again at the first ANALYZE (autovacuum's, after 50 rows).
`bench/plans.py` runs the same check at a million leads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest

from bench.plans import HOT, explain, plan_nodes, prepare, scans, seed
from gateway import db
from gateway.leads import sql as leads_sql

# Updates of rows by id: on a table believed empty, a scan of its ten assumed pages costs less
# than ten index lookups, and Postgres plans one.
EMPTY_TABLE_SCANS = {
    "leads.WRITE_LEADS": ["seq scan of leads"],
    "scoring.SET_SCORES": ["seq scan of leads"],
    "workers.RECORD": ["seq scan of deliveries"],
    "render.SAVE_RENDERED": ["seq scan of deliveries"],
}
NONE = {name: [] for name in HOT}


@pytest.fixture
async def installed(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    """A new install: a database just migrated, its tables never written or analyzed (the
    suite's shared database keeps the statistics of earlier tests' rows after each TRUNCATE)."""
    await db.migrate(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    await db.init_connection(connection)
    yield connection
    await connection.close()


async def test_generic_plans_of_hot_statements_are_index_driven_on_grown_tables(
    installed: asyncpg.Connection,
) -> None:
    conn = installed
    assert await scans(conn) == {**NONE, **EMPTY_TABLE_SCANS}  # a new install's empty tables

    await seed(conn, 30_000)
    assert await scans(conn) == NONE  # grown, never analyzed

    await conn.execute("ANALYZE")
    assert await scans(conn) == NONE


async def test_plans_cached_on_empty_tables_are_made_again_at_the_first_analyze(
    installed: asyncpg.Connection,
) -> None:
    conn = installed
    await prepare(conn)  # what a connection's statement cache holds from the first requests
    assert await explain(conn) == {**NONE, **EMPTY_TABLE_SCANS}
    await seed(conn, 30_000)
    await conn.execute("ANALYZE")  # autovacuum's, in a deployment
    assert await explain(conn) == NONE


async def test_a_postback_without_a_phone_reads_no_leads_by_phone_when_most_share_one(
    installed: asyncpg.Connection,
) -> None:
    # Most leads sharing one phone (a form's placeholder, a test number): after ANALYZE the
    # generic plan may scan leads for the phone arm, which must then not run without a phone.
    conn = installed
    await seed(conn, 30_000)
    await conn.execute("UPDATE leads SET phone = '+14155550123'")
    await conn.execute("ANALYZE leads")
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    await conn.execute(f"PREPARE candidates AS {leads_sql.FETCH_CANDIDATES}")
    raw = await conn.fetchval(
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE candidates"
        "(ARRAY['ten_a'], ARRAY[NULL], ARRAY[NULL], ARRAY['p7@example.com'], ARRAY[NULL])"
    )
    await conn.execute("RESET plan_cache_mode")
    (plan,) = orjson.loads(raw)
    scans_run = [
        node["Actual Loops"]
        for node in plan_nodes(plan["Plan"])
        if node.get("Relation Name") == "leads" and node["Node Type"] == "Seq Scan"
    ]
    assert not any(scans_run), scans_run  # a scan the plan holds, but never runs
