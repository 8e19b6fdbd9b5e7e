"""Are the hot paths' statements index-driven whatever plan the cache holds?

Seeds a database with N leads (1,000,000 by default), as many events, deliveries and attempts,
and then asks Postgres for the GENERIC plan of every statement on the ingest and delivery paths
(PREPARE, then EXPLAIN EXECUTE under `plan_cache_mode = force_generic_plan`: the plan a prepared
statement falls back to, made without knowing its parameters), before any ANALYZE and after. A
sequential scan of a table that grows with the install is a failure: it would make the
statement's cost grow with the table.

    .venv/bin/python bench/plans.py [--leads 1000000]

It starts an embedded Postgres of its own (the wheel's, PostgreSQL 18), so nothing else is
disturbed; `tests/test_plans.py` runs the same check at a smaller size in `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway import db, embedded, events, idempotency, keys, stats  # noqa: E402
from gateway.deliveries import sql as deliveries_sql  # noqa: E402
from gateway.inbound import sql as inbound_sql  # noqa: E402
from gateway.leads import sql as leads_sql  # noqa: E402
from gateway.scoring import sql as scoring_sql  # noqa: E402
from workers import render  # noqa: E402
from workers import sql as worker_sql  # noqa: E402

# Tables that grow with the install: none of them may be scanned whole on a hot path.
# (tenant_monthly_counts grows with tenants and months, by a few rows a month each, not with the
# traffic: with a few tenants the planner rightly reads it whole, and its lookups name a prefix
# of its primary key.)
GROWING = {"leads", "stage_history", "events", "deliveries", "delivery_attempts",
           "idempotency_keys", "inbound_events"}  # fmt: skip

# Indexes that serve listings and analytics (a tenant's rows in time order): a hot statement that
# uses one walks a tenant's whole history instead of looking up a key.
LISTING_INDEXES = {"leads_tenant_created_id", "deliveries_tenant", "deliveries_endpoint",
                   "delivery_attempts_tenant_started"}  # fmt: skip

# Not here: FAIL_PENDING_OF_ENDPOINTS, which runs once when an endpoint is disabled and walks
# that endpoint's deliveries by deliveries_endpoint; scoring.RESCORE_PAGE, the background
# rescore's page, which walks a tenant's leads by the listing index on purpose (a keyset on
# (created_at, id): 500 leads in ~19 ms at a million leads, as deep in the table as at its top);
# and the listings and analytics.
HOT = {
    "keys.AUTHENTICATE": keys.AUTHENTICATE,
    "idempotency.GET_STORED": idempotency.GET_STORED,
    "leads.FETCH_CANDIDATES": leads_sql.FETCH_CANDIDATES,
    "leads.WRITE_LEADS": leads_sql.WRITE_LEADS,
    "leads.LOCK_LEAD": leads_sql.LOCK_LEAD,
    "leads.UPDATE_LEAD": leads_sql.UPDATE_LEAD,
    "leads.LOCK_QUOTA": leads_sql.LOCK_QUOTA,
    "scoring.GET_LEAD_FOR_SCORE": scoring_sql.GET_LEAD_FOR_SCORE,
    "scoring.SET_SCORES": scoring_sql.SET_SCORES,
    "stats.STATS": stats.STATS,
    "deliveries.LEAD_EXISTS": deliveries_sql.LEAD_EXISTS,
    "deliveries.STOP_LEAD": deliveries_sql.STOP_LEAD,
    "inbound.FIND_LEAD": inbound_sql.FIND_LEAD,
    "inbound.STORE_EVENT": inbound_sql.STORE_EVENT,
    "inbound.OPT_OUT": inbound_sql.OPT_OUT,
    "events.WRITE_EVENTS": events.WRITE_EVENTS,
    "workers.CLAIM": worker_sql.CLAIM,
    "workers.NEXT_DUE": worker_sql.NEXT_DUE,
    "workers.RECORD": worker_sql.RECORD,
    "workers.RELEASE": worker_sql.RELEASE,
    "workers.UPDATE_HEALTH": worker_sql.UPDATE_HEALTH,
    "render.SAVE_RENDERED": render.SAVE_RENDERED,
}

SEED = """
INSERT INTO tenants (id, name) VALUES ('ten_a', 'a'), ('ten_b', 'b') ON CONFLICT DO NOTHING;
INSERT INTO endpoints (id, tenant_id, url, secret, ordered)
VALUES ('ep_a', 'ten_a', 'http://127.0.0.1:9/a', 'x', false),
       ('ep_o', 'ten_a', 'http://127.0.0.1:9/o', 'x', true) ON CONFLICT DO NOTHING;
INSERT INTO leads (id, tenant_id, email, phone, external_id, stage, created_at)
SELECT 'lead_' || g, CASE WHEN g % 10 = 0 THEN 'ten_b' ELSE 'ten_a' END,
       'p' || g || '@example.com', '+1415' || lpad(g::text, 7, '0'), 'ext-' || g, 'new',
       now() - make_interval(secs => g)
FROM generate_series(1, $1) AS g;
INSERT INTO events (id, tenant_id, type, lead_id, body, created_at)
SELECT 'evt_' || lpad(g::text, 12, '0'), 'ten_a', 'lead.created', 'lead_' || g, '{}',
       now() - make_interval(secs => g)
FROM generate_series(1, $1) AS g;
INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, lead_id, event_type, state,
                        ordered, first_due_at, next_attempt_at, created_at, updated_at)
SELECT 'dlv_' || g, 'ten_a', 'evt_' || lpad(g::text, 12, '0'),
       CASE WHEN g % 100 = 0 THEN 'ep_o' ELSE 'ep_a' END, 'lead_' || g, 'lead.created',
       CASE WHEN g % 50 = 0 THEN 'pending' ELSE 'succeeded' END, g % 100 = 0,
       now() - make_interval(secs => g), CASE WHEN g % 50 = 0 THEN now() END, now(), now()
FROM generate_series(1, $1) AS g;
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status, latency_ms, outcome,
                               tenant_id)
SELECT 'dlv_' || g, 1, now(), 200, 1.0, 'succeeded', 'ten_a' FROM generate_series(1, $1) AS g;
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type, body)
SELECT 'ten_a', 'k' || g, '\\x00', 201, 'application/json', '\\x00'
FROM generate_series(1, $1 / 10) AS g;
"""


async def seed(conn: asyncpg.Connection, leads: int) -> None:
    """The tables filled as a busy install's would be; not analyzed."""
    # A plain statement per table, parameters inlined (a multi-statement string takes none).
    for statement in SEED.replace("$1", str(int(leads))).split(";\n"):
        if statement.strip():
            await conn.execute(statement)


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


async def prepare(conn: asyncpg.Connection) -> None:
    """PREPARE every hot statement on `conn` (as hot_0, hot_1, …), as the statement cache would."""
    for number, statement in enumerate(HOT.values()):
        await conn.execute(f"PREPARE hot_{number} AS {statement}")


async def explain(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Per statement PREPAREd by `prepare`: the growing tables its generic plan reads with a
    sequential scan, and the listing indexes it walks.

    Each is EXPLAINed as `EXECUTE` under `plan_cache_mode = force_generic_plan`: the plan made
    without its parameters' values, which a prepared statement falls back to. (`EXPLAIN
    (GENERIC_PLAN)` sent with bound values plans for those values instead: NULLs fold to a
    one-time false filter, which hides every scan.)"""
    found: dict[str, list[str]] = {}
    await conn.execute("SET plan_cache_mode = force_generic_plan")
    try:
        for number, (name, statement) in enumerate(HOT.items()):
            arity = len((await conn.prepare(statement)).get_parameters())
            nulls = f"({', '.join(['NULL'] * arity)})" if arity else ""
            raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE hot_{number}{nulls}")
            (plan,) = orjson.loads(raw)
            found[name] = sorted(
                f"seq scan of {node['Relation Name']}"
                if node.get("Node Type") == "Seq Scan"
                else f"walk of {node['Index Name']}"
                for node in plan_nodes(plan["Plan"])
                if (node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in GROWING)
                or node.get("Index Name") in LISTING_INDEXES
            )
    finally:
        await conn.execute("RESET plan_cache_mode")
    return found


async def scans(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """`explain` of every hot statement prepared now, on the tables as they are."""
    await prepare(conn)
    try:
        return await explain(conn)
    finally:
        for number in range(len(HOT)):
            await conn.execute(f"DEALLOCATE hot_{number}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadgate-plans-") as tmp:
        url, server = embedded.start_postgres(Path(tmp) / "pg", durable=False)
        try:
            await db.migrate(url)
            conn = await asyncpg.connect(url)
            began = time.monotonic()
            await seed(conn, opts.leads)
            print(f"seeded {opts.leads:,} leads, events, deliveries and attempts "
                  f"in {time.monotonic() - began:.0f} s")  # fmt: skip
            failed = False
            for when in ("never analyzed", "after ANALYZE"):
                if when == "after ANALYZE":
                    await conn.execute("ANALYZE")
                print(f"\n{when}: generic plans")
                for name, tables in (await scans(conn)).items():
                    failed |= bool(tables)
                    verdict = ", ".join(tables) if tables else "index-driven, by key"
                    print(f"  {name:<36} {verdict}")
            await conn.close()
        finally:
            server.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
