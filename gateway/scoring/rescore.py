"""The background rescore: after a change of rules, every lead of the tenant is scored again.

Every gateway process runs one `Rescorer`. It is woken by a change of rules made in its own
process and otherwise looks every `LEADGATE_RESCORE_INTERVAL` seconds for a rescore that is due
and that no live gateway holds (a change made by `leadgate scoring set`, or a rescore whose
gateway died: its lease ran out). It leases the rescore and works through the tenant's leads
newest first, RESCORE_BATCH a transaction: lock the rescore's row (a newer version of the rules
stops this run), lock the page's leads, score them, write the changed ones with their
`lead.updated` events (one statement each, set-based) and the progress, commit, wake the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import asyncpg
import structlog

from gateway.constants import (
    RESCORE_BATCH,
    RESCORE_LEASE_SECONDS,
    RESCORE_START_DELAY_SECONDS,
)
from gateway.db import Conn, is_unavailable
from gateway.events import Event, Outbox
from gateway.leads.ingest import lead_json
from gateway.scoring import sql
from gateway.scoring.rules import ruleset_of
from gateway.scoring.store import scored_changes, write_scores
from gateway.wake import Waker

log = structlog.get_logger("leadgate.scoring")


class Rescorer:
    def __init__(
        self, pool: asyncpg.Pool, outbox: Outbox, waker: Waker | None, interval: float
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._waker = waker
        self._interval = interval
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Look now (after a change of rules this process committed)."""
        self._woken.set()

    async def run(self) -> None:
        """Work on due rescores until cancelled; Postgres out of reach is waited out."""
        while True:
            try:
                while await self.work_once():
                    pass
            except Exception as e:
                if not is_unavailable(e):
                    log.error("rescore_failed", exc_info=e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._interval)
            if self._woken.is_set():
                # A change of rules here: its rescore is due once the start delay has passed.
                self._woken.clear()
                await asyncio.sleep(RESCORE_START_DELAY_SECONDS)

    async def work_once(self) -> bool:
        """Claim one due rescore and run it to its end; False if none was due."""
        claimed = await self._pool.fetchrow(sql.CLAIM_RESCORE, RESCORE_LEASE_SECONDS)
        if claimed is None:
            return False
        tenant_id, version = claimed["tenant_id"], claimed["version"]
        log.info("rescore_started", tenant_id=tenant_id, version=version)
        while await self._page(tenant_id, version):
            pass
        return True

    async def _page(self, tenant_id: str, version: int) -> bool:
        """Score one page of the tenant's leads; False once the rescore is over (or replaced)."""
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(sql.LOCK_RESCORE, tenant_id)
            if job is None or job["version"] != version:
                return False  # a newer version of the rules restarted it
            config = await conn.fetchval(sql.GET_SCORING, tenant_id)
            if (config or {}).get("version") != version:
                return False
            total, upto, after = job["total"], job["cursor_created_at"], job["cursor_id"]
            if total is None:
                start = await conn.fetchrow(sql.RESCORE_START, tenant_id)
                assert start is not None
                total, upto, after = start["total"], start["upto"], ""
            rows = await conn.fetch(sql.RESCORE_PAGE, tenant_id, upto, after, RESCORE_BATCH)
            live = [lead_json(r) for r in rows if r["deleted_at"] is None]
            changed = scored_changes(ruleset_of(tenant_id, config), live)
            due = await self._write(conn, tenant_id, changed, now)
            last = min(rows, key=lambda r: (r["created_at"], r["id"])) if rows else None
            finished = len(rows) < RESCORE_BATCH
            await conn.execute(
                sql.RESCORE_PROGRESS, tenant_id, len(rows), len(changed), total,
                last["created_at"] if last else upto, last["id"] if last else after,
                finished, RESCORE_LEASE_SECONDS,
            )  # fmt: skip
        if due and self._waker is not None:
            self._waker.wake()
        if finished:
            log.info("rescore_finished", tenant_id=tenant_id, version=version)
        return not finished

    async def _write(
        self, conn: Conn, tenant_id: str, changed: list[dict[str, object]], now: datetime
    ) -> int:
        if not changed:
            return 0
        for lead in changed:
            lead["updated_at"] = now
        await write_scores(conn, changed, now)
        events = [
            (tenant_id, Event("lead.updated", lead, now, str(lead["id"]))) for lead in changed
        ]
        _, due = await self._outbox.write(conn, events)
        return due
