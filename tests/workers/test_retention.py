"""Bounded storage: what outlived LEADGATE_RETENTION_DAYS goes, what is pending or recent stays,
every prune statement walks an index, and the worker prunes by itself.

Retention is set to one second here (the setting takes fractions of a day), so deliveries made
by a real worker outlive it within the test.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.ids import floor_id, id_at
from gateway.settings import Settings
from tests.conftest import Tenant
from tests.workers.conftest import (
    ReceiverFactory,
    WorkerFactory,
    add_endpoint,
    post_lead,
    wait_until,
)
from tests.workers.helpers.api import publish
from tests.workers.helpers.records import all_in_state
from workers import retention
from workers.retention import prune_once

Client = TestClient[Any, Any]
ONE_SECOND = 1 / 86_400  # in days


async def count(conn: asyncpg.Connection, table: str) -> int:
    value: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return value


async def pruned_when_old_enough(
    pool_settings: Settings, conn: asyncpg.Connection, timeout: float = 10.0
) -> retention.Pruned:
    """Prune (as the worker does) until the first ended delivery has outlived the retention."""
    pool = await asyncpg.create_pool(pool_settings.database_url, min_size=1, max_size=2)
    assert pool is not None
    total = retention.Pruned()
    try:
        async with asyncio.timeout(timeout):
            while total.events == 0:
                pruned = await prune_once(pool, pool_settings)
                for name in ("events", "deliveries", "delivery_attempts", "idempotency_keys"):
                    setattr(total, name, getattr(total, name) + getattr(pruned, name))
                await asyncio.sleep(0.1)
    finally:
        await pool.close()
    return total


async def test_ended_deliveries_go_with_their_attempts_and_event_and_the_rest_stays(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    await run_worker(settings.model_copy(update={"retry_schedule": (0.0, 3600.0)}))
    ok = await receiver_factory()
    await add_endpoint(client, tenant, ok.url)
    lead = await post_lead(client, tenant, email="old@example.com")
    await all_in_state(conn, "succeeded", 1)
    scheduled = await publish(client, tenant, type="followup.day3", data={}, delay=3600)
    failing = await receiver_factory(statuses=[500])
    await add_endpoint(client, tenant, failing.url)
    await post_lead(client, tenant, email="old@example.com", first_name="Ada")  # lead.updated
    await failing.wait_for(1)
    await wait_until(lambda: _retrying(conn))

    pruned = await pruned_when_old_enough(
        settings.model_copy(update={"retention_days": ONE_SECOND}), conn
    )

    assert (pruned.events, pruned.deliveries, pruned.delivery_attempts) == (1, 1, 1)
    types = {r["type"] for r in await conn.fetch("SELECT type FROM events")}
    # lead.updated has a pending delivery (retrying in an hour) and one that succeeded: it
    # stays whole, as does the scheduled event.
    assert types == {"lead.updated", "followup.day3"}
    assert await count(conn, "deliveries") == 3
    assert await conn.fetchval("SELECT count(*) FROM events WHERE id = $1", scheduled["id"]) == 1
    assert await conn.fetchval("SELECT count(*) FROM leads WHERE id = $1", lead["id"]) == 1
    assert await conn.fetchval("SELECT count(*) FROM stage_history WHERE lead_id = $1", lead["id"])


async def _retrying(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM deliveries WHERE attempt_count = 1"
                                    " AND state = 'pending' AND last_status = 500"))  # fmt: skip


async def test_idempotency_keys_past_their_ttl_and_old_inbound_events_go(
    tenant: Tenant, settings: Settings, conn: asyncpg.Connection
) -> None:
    for key, age in (("old", timedelta(days=2)), ("fresh", timedelta(minutes=1))):
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type,"
            " body, created_at) VALUES ($1, $2, '\\x00', 201, 'application/json', '{}', $3)",
            tenant.id, key, datetime.now(UTC) - age,
        )  # fmt: skip
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    for name, ms in (("inb_old", now_ms - 2 * 86_400_000), ("inb_new", now_ms)):
        await conn.execute(
            "INSERT INTO inbound_events (id, tenant_id, source, external_id, type, body)"
            " VALUES ($1, $2, 'sms', $3, 'customer.reply', '{}')",
            id_at("inb", ms, 1), tenant.id, name,
        )  # fmt: skip
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        pruned = await prune_once(pool, settings.model_copy(update={"retention_days": 1.0}))
    finally:
        await pool.close()

    assert (pruned.idempotency_keys, pruned.inbound_events) == (1, 1)
    assert [r["key"] for r in await conn.fetch("SELECT key FROM idempotency_keys")] == ["fresh"]
    assert [
        r["external_id"] for r in await conn.fetch("SELECT external_id FROM inbound_events")
    ] == ["inb_new"]


async def test_retention_of_zero_days_keeps_every_event(
    client: Client, tenant: Tenant, settings: Settings, conn: asyncpg.Connection
) -> None:
    await post_lead(client, tenant, email="kept@example.com")
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        pruned = await prune_once(pool, settings.model_copy(update={"retention_days": 0.0}))
    finally:
        await pool.close()

    assert pruned.events == 0
    assert await count(conn, "events") == 1


async def test_a_running_worker_prunes_by_itself(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    short = {"retention_days": ONE_SECOND, "retention_interval": 0.2}
    await run_worker(settings.model_copy(update=short))
    await add_endpoint(client, tenant, (await receiver_factory()).url)
    await post_lead(client, tenant, email="brief@example.com")
    await all_in_state(conn, "succeeded", 1)

    async def all_gone() -> bool:
        return await count(conn, "events") + await count(conn, "delivery_attempts") == 0

    await wait_until(all_gone, timeout=15)
    assert await count(conn, "leads") == 1


# --- every statement is index-driven, at a realistic size ----------------------------------

OLD_EVENTS, NEW_EVENTS = 60_000, 20_000


async def seed(conn: asyncpg.Connection, tenant_id: str) -> None:
    """80k events (a quarter recent), one delivery each (5k still pending), two attempts per
    delivery, 50k idempotency keys and 20k inbound events; then statistics."""
    endpoint = "ep_seed"
    await conn.execute(
        "INSERT INTO endpoints (id, tenant_id, url, secret) VALUES ($1, $2, 'http://x', 's')",
        endpoint, tenant_id,
    )  # fmt: skip
    await conn.execute(
        """
        INSERT INTO events (id, tenant_id, type, body, created_at)
        SELECT CASE WHEN i <= $2 THEN 'evt_0' ELSE 'evt_7' END || lpad(i::text, 25, '0'), $1,
               'lead.created', '{}',
               now() - CASE WHEN i <= $2 THEN interval '40 days' ELSE interval '0' END
        FROM generate_series(1, $2::int + $3::int) AS i
        """,
        tenant_id, OLD_EVENTS, NEW_EVENTS,
    )  # fmt: skip
    await conn.execute(
        """
        INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, event_type, state,
                                next_attempt_at, updated_at)
        SELECT 'dlv_' || e.id, $1, e.id, $2, 'lead.created',
               CASE WHEN right(e.id, 2) = '00' THEN 'pending' ELSE 'succeeded' END,
               now(), e.created_at
        FROM events e
        """,
        tenant_id, endpoint,
    )  # fmt: skip
    await conn.execute(
        """
        INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, outcome,
                                       tenant_id)
        SELECT d.id, n, d.updated_at, 12.5, 'succeeded', $1
        FROM deliveries d, generate_series(1, 2) AS n
        """,
        tenant_id,
    )
    await conn.execute(
        """
        INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type, body,
                                      created_at)
        SELECT $1, 'k' || i, '\\x00', 201, 'application/json', '{}',
               now() - make_interval(secs => i * 4)
        FROM generate_series(1, 50000) AS i
        """,
        tenant_id,
    )
    await conn.execute(
        """
        INSERT INTO inbound_events (id, tenant_id, source, external_id, type, body)
        SELECT 'inb_0' || lpad(i::text, 25, '0'), $1, 'sms', 'x' || i, 'customer.reply', '{}'
        FROM generate_series(1, 20000) AS i
        """,
        tenant_id,
    )
    await conn.execute(
        "ANALYZE events, deliveries, delivery_attempts, idempotency_keys, inbound_events"
    )


def scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every scan in a plan tree."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found.extend(scans(child))
    return found


def literal(value: Any) -> str:
    if isinstance(value, list):
        return "ARRAY[" + ",".join(literal(v) for v in value) + "]::text[]"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@pytest.mark.slow
async def test_every_prune_statement_walks_an_index_whatever_the_plan_cache_holds(
    tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await seed(conn, tenant.id)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    old_ids = [f"evt_0{i:025d}" for i in range(1, 501)]
    statements = {
        "pick": (retention.PICK_EVENTS, "text, text, timestamptz, int",
                 ["", floor_id("evt", cutoff), cutoff.isoformat(), retention.BATCH]),
        "deliveries": (retention.DELETE_DELIVERIES, "text[], timestamptz",
                       [old_ids, cutoff.isoformat()]),
        "events": (retention.DELETE_EVENTS, "text[]", [old_ids]),
        "idempotency": (retention.DELETE_IDEMPOTENCY_KEYS, "timestamptz, int",
                        [(cutoff + timedelta(days=29)).isoformat(), retention.BATCH]),
        "inbound": (retention.DELETE_INBOUND_EVENTS, "text, int",
                    [floor_id("inb", cutoff), retention.BATCH]),
    }  # fmt: skip
    for name, (query, types, _) in statements.items():
        await conn.execute(f"PREPARE prune_{name} ({types}) AS {query}")
    try:
        for plan_mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {plan_mode}")
            for name, (_, _, args) in statements.items():
                plan = await conn.fetchval(
                    f"EXPLAIN (FORMAT JSON) EXECUTE prune_{name}({', '.join(map(literal, args))})"
                )
                found = scans(orjson.loads(plan)[0]["Plan"])
                assert found, name
                assert not [s for s in found if s[0] == "Seq Scan"], (plan_mode, name, found)
    finally:
        await conn.execute("DEALLOCATE ALL")
        await conn.execute("RESET plan_cache_mode")
