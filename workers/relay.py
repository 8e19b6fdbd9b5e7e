"""The relay: find in Postgres every delivery that is due and not in flight, and signal it.

It is what makes delivery survive a lost signal — a gateway that crashed between commit and
enqueue, a flushed or restarted Redis, a worker killed mid-attempt (once its lease expires).
Each sweep marks what it signals, so relays in several workers do not signal the same batch.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from redis.exceptions import RedisError

from gateway.constants import DELIVER_JOB
from workers import sql
from workers.delivery import CHUNK
from workers.state import WorkerState

log = structlog.get_logger("leadgate.relay")

# Deliveries signalled per sweep; a full sweep is followed at once by another.
SWEEP_LIMIT = 2000


async def sweep(state: WorkerState) -> int:
    """One sweep; returns how many deliveries were signalled."""
    rows = await state.pool.fetch(sql.SWEEP_DUE, state.settings.relay_requeue_after, SWEEP_LIMIT)
    ids = [r["id"] for r in rows]
    for i in range(0, len(ids), CHUNK):
        await state.redis.enqueue_job(DELIVER_JOB, ids[i : i + CHUNK])
    if ids:
        log.info("relay_signalled", deliveries=len(ids))
    return len(ids)


async def run(state: WorkerState) -> None:
    """Sweep every LEADGATE_RELAY_INTERVAL seconds until cancelled; errors wait a turn."""
    while True:
        try:
            while await sweep(state) >= SWEEP_LIMIT:
                pass
        except (OSError, RedisError, asyncpg.PostgresError) as e:
            log.warning("relay_failed", error=type(e).__name__)
        await asyncio.sleep(state.settings.relay_interval)
