"""The timeline's and deals' statements read a lead's rows by that lead's own indexes, in the
plan a prepared statement falls back to (generic), on tables grown and analyzed: a lead's page
costs its own rows, however many other leads the install holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from gateway import db
from gateway.deals import sql as deals_sql
from gateway.inbound import sql as inbound_sql
from gateway.leads.optout import SET_OPTED_OUT
from gateway.timeline import sql as timeline_sql

LEADS = 5_000

SEED = f"""
INSERT INTO tenants (id, name) VALUES ('ten_a', 'a');
INSERT INTO leads (id, tenant_id, email, stage, created_at)
SELECT 'lead_' || g, 'ten_a', 'p' || g || '@example.com', 'new', now() - make_interval(secs => g)
FROM generate_series(1, {LEADS}) AS g;
INSERT INTO stage_history (tenant_id, lead_id, from_stage, to_stage, at)
SELECT 'ten_a', 'lead_' || (g % {LEADS} + 1), 'new', 'contacted', now() - make_interval(secs => g)
FROM generate_series(1, {LEADS * 4}) AS g;
INSERT INTO events (id, tenant_id, type, lead_id, body, created_at)
SELECT 'evt_' || lpad(g::text, 12, '0'), 'ten_a', 'lead.updated', 'lead_' || (g % {LEADS} + 1),
       '{{}}', now() - make_interval(secs => g)
FROM generate_series(1, {LEADS * 4}) AS g;
INSERT INTO inbound_events (id, tenant_id, source, external_id, type, lead_id, body, event_id,
                            received_at)
SELECT 'inb_' || lpad(g::text, 12, '0'), 'ten_a', 'sms', 'm' || g, 'customer.reply',
       'lead_' || (g % {LEADS} + 1), '{{}}', 'evt_' || lpad(g::text, 12, '0'),
       now() - make_interval(secs => g)
FROM generate_series(1, {LEADS * 4}) AS g;
INSERT INTO endpoints (id, tenant_id, url, secret) VALUES ('ep_a', 'ten_a', 'http://x/', 'x');
INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, lead_id, event_type, state,
                        created_at, updated_at)
SELECT 'dlv_' || g, 'ten_a', 'evt_' || lpad(g::text, 12, '0'), 'ep_a',
       'lead_' || (g % {LEADS} + 1), 'lead.updated', 'succeeded', now(), now()
FROM generate_series(1, {LEADS * 4}) AS g;
INSERT INTO deals (id, tenant_id, lead_id, title, currency, created_at)
SELECT 'deal_' || g, 'ten_a', 'lead_' || (g % {LEADS} + 1), 'd', 'USD',
       now() - make_interval(secs => g)
FROM generate_series(1, {LEADS * 2}) AS g;
ANALYZE
"""

STATEMENTS = {
    "timeline.PAGE": timeline_sql.PAGE,
    "timeline.COUNT": timeline_sql.COUNT,
    "timeline.DELIVERIES": timeline_sql.DELIVERIES,
    "inbound.LINK_EVENT": inbound_sql.LINK_EVENT,
    "leads.SET_OPTED_OUT": SET_OPTED_OUT,
    "deals.LOCK_LEAD": deals_sql.LOCK_LEAD,
    "deals.GET_DEAL": deals_sql.GET_DEAL,
    "deals.LOCK_DEAL": deals_sql.LOCK_DEAL,
    "deals.UPDATE_DEAL": deals_sql.UPDATE_DEAL,
    "deals.DELETE_DEAL": deals_sql.DELETE_DEAL,
    "deals.DEALS_OF_LEAD": deals_sql.DEALS_OF_LEAD,
    "deals.UNLINK_LEAD": deals_sql.UNLINK_LEAD,
}
# What a lead's statements may never do: read a growing table whole, or walk a tenant's rows.
GROWING = {"leads", "stage_history", "events", "inbound_events", "deliveries", "deals"}
TENANT_INDEXES = {"leads_tenant_created_id", "deliveries_tenant", "deals_tenant_created_id"}


@pytest.fixture
async def grown(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    await db.migrate(fresh_database)
    connection = await asyncpg.connect(fresh_database)
    await db.init_connection(connection)
    for statement in SEED.split(";\n"):
        await connection.execute(statement)
    await connection.execute("SET plan_cache_mode = force_generic_plan")
    yield connection
    await connection.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _generic_plan(conn: asyncpg.Connection, name: str, statement: str) -> list[Any]:
    """The generic plan of `statement`, as EXPLAIN EXECUTE shows it for a prepared statement
    that may not look at its parameters' values."""
    count = len((await conn.prepare(statement)).get_parameters())
    handle = name.replace(".", "_").lower()
    await conn.execute(f"PREPARE {handle} AS {statement}")
    args = f"({', '.join(['NULL'] * count)})" if count else ""
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {handle}{args}")
    (plan,) = orjson.loads(raw)
    return list(_nodes(plan["Plan"]))


async def test_a_leads_statements_never_scan_a_table_or_walk_a_tenant(
    grown: asyncpg.Connection,
) -> None:
    bad = {}
    for name, statement in STATEMENTS.items():
        nodes = await _generic_plan(grown, name, statement)
        found = [
            f"seq scan of {n['Relation Name']}"
            for n in nodes
            if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in GROWING
        ] + [f"walk of {n['Index Name']}" for n in nodes if n.get("Index Name") in TENANT_INDEXES]
        if found:
            bad[name] = found
    assert bad == {}


async def test_a_timeline_page_reads_each_source_by_lead_and_time(
    grown: asyncpg.Connection,
) -> None:
    nodes = await _generic_plan(grown, "page", timeline_sql.PAGE)
    used = {n["Index Name"] for n in nodes if "Index Name" in n}
    assert {"inbound_events_lead_received", "events_lead_created"} <= used
    assert used & {"stage_history_lead_at", "stage_history_lead"}
