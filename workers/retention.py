"""Bounded storage: the worker prunes what has outlived LEADGATE_RETENTION_DAYS, a batch at a time.

An event goes, with its deliveries and their attempts, once every one of its deliveries ended
(succeeded, failed or cancelled) longer ago than the retention and the event itself is that
old; an event with a pending delivery stays whole, however old. Idempotency keys go once past
LEADGATE_IDEMPOTENCY_TTL_SECONDS, inbound events (the provider ids a resent event is matched
against) after the retention. Leads and their stage history are never pruned.

Every statement walks an index (events and inbound events by their time-ordered primary key,
deliveries by event, attempts by delivery, idempotency keys by creation time), each batch is
one short transaction that locks only the rows it removes (`SKIP LOCKED`, so workers pruning
side by side never wait on each other), and a pause between batches leaves the hot path room.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from gateway import metrics
from gateway.constants import EVENT_PREFIX, INBOUND_PREFIX
from gateway.ids import floor_id
from gateway.settings import Settings
from workers.state import WorkerState

log = structlog.get_logger("leadgate.retention")

# Events per transaction (each with its deliveries and attempts): a few milliseconds of work.
BATCH = 500
# Between two batches the prune steps aside this long, so it never hogs Postgres.
PAUSE = 0.01

# Events made before the cutoff id ($2) none of whose deliveries is pending or ended after
# the cutoff time ($3), in primary-key order from $1.
PICK_EVENTS = """
SELECT e.id FROM events e
WHERE e.id > $1 AND e.id < $2
  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id
                  AND (d.state = 'pending' OR d.updated_at >= $3))
ORDER BY e.id LIMIT $4
FOR UPDATE OF e SKIP LOCKED
"""

# The picked events' deliveries, checked again (one may have been retried meanwhile), and their
# attempts.
DELETE_DELIVERIES = """
WITH gone AS (
    DELETE FROM deliveries
    WHERE event_id = ANY ($1::text[]) AND state <> 'pending' AND updated_at < $2
    RETURNING id
), attempts AS (
    DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM gone) RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deliveries, (SELECT count(*) FROM attempts) AS attempts
"""

# Only events left without deliveries: one whose delivery turned pending again stays.
DELETE_EVENTS = """
DELETE FROM events e
WHERE e.id = ANY ($1::text[]) AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
"""

# By physical row address (a TID scan), so the outer delete never considers the whole table.
DELETE_IDEMPOTENCY_KEYS = """
DELETE FROM idempotency_keys WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM idempotency_keys WHERE created_at < $1
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED
))
"""

DELETE_INBOUND_EVENTS = """
DELETE FROM inbound_events WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM inbound_events WHERE id < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
))
"""


@dataclass
class Pruned:
    """Rows removed by one prune, per table."""

    events: int = 0
    deliveries: int = 0
    delivery_attempts: int = 0
    idempotency_keys: int = 0
    inbound_events: int = 0

    @property
    def total(self) -> int:
        return sum(asdict(self).values())


def _count(status: str) -> int:
    """Rows affected, from a command tag such as `DELETE 12`."""
    return int(status.rsplit(" ", 1)[-1])


async def prune_once(pool: asyncpg.Pool, settings: Settings) -> Pruned:
    """Remove everything past its time, batch after batch, until nothing is left to remove."""
    pruned, now = Pruned(), datetime.now(UTC)
    ttl = timedelta(seconds=settings.idempotency_ttl_seconds)
    await _idempotency_keys(pool, now - ttl, pruned)
    if settings.retention_days > 0:
        cutoff = now - timedelta(days=settings.retention_days)
        await _events(pool, cutoff, pruned)
        await _inbound_events(pool, cutoff, pruned)
    for table, count in asdict(pruned).items():
        if count:
            metrics.PRUNED.labels(table).inc(count)
    return pruned


async def _events(pool: asyncpg.Pool, cutoff: datetime, pruned: Pruned) -> None:
    last, before = "", floor_id(EVENT_PREFIX, cutoff)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in await conn.fetch(PICK_EVENTS, last, before, cutoff, BATCH)]
            if ids:
                row = await conn.fetchrow(DELETE_DELIVERIES, ids, cutoff)
                assert row is not None
                pruned.deliveries += row["deliveries"]
                pruned.delivery_attempts += row["attempts"]
                pruned.events += _count(await conn.execute(DELETE_EVENTS, ids))
        if len(ids) < BATCH:
            return
        last = ids[-1]
        await asyncio.sleep(PAUSE)


async def _idempotency_keys(pool: asyncpg.Pool, expired: datetime, pruned: Pruned) -> None:
    while (count := _count(await pool.execute(DELETE_IDEMPOTENCY_KEYS, expired, BATCH))) > 0:
        pruned.idempotency_keys += count
        if count < BATCH:
            return
        await asyncio.sleep(PAUSE)


async def _inbound_events(pool: asyncpg.Pool, cutoff: datetime, pruned: Pruned) -> None:
    before = floor_id(INBOUND_PREFIX, cutoff)
    while (count := _count(await pool.execute(DELETE_INBOUND_EVENTS, before, BATCH))) > 0:
        pruned.inbound_events += count
        if count < BATCH:
            return
        await asyncio.sleep(PAUSE)


async def run(state: WorkerState) -> None:
    """Prune every LEADGATE_RETENTION_INTERVAL seconds until cancelled; errors wait a turn."""
    while True:
        try:
            began = time.perf_counter()
            pruned = await prune_once(state.pool, state.settings)
            if pruned.total:
                elapsed_ms = round((time.perf_counter() - began) * 1000, 1)
                log.info("pruned", elapsed_ms=elapsed_ms, **asdict(pruned))
        except (OSError, asyncpg.PostgresError) as e:
            log.warning("prune_failed", error=type(e).__name__)
        await asyncio.sleep(state.settings.retention_interval)
