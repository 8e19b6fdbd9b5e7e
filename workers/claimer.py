"""The claim loop: pull due deliveries from Postgres in batches, as fast as there is room.

    wake-up (arq) | next due time | LEADGATE_RELAY_INTERVAL
        ─► claim up to the free slots (FOR UPDATE SKIP LOCKED, a lease each)
        ─► triage ─► send each (bounded by LEADGATE_WORKER_CONCURRENCY) ─► completer

Postgres decides what is due; a wake-up only says "look now". With nothing to do the loop
sleeps until the next due time it knows of (a retry, a scheduled follow-up), a wake-up, or
LEADGATE_RELAY_INTERVAL at the longest, so a lost wake-up delays a delivery by that much at
most. Without Redis it looks at least once a second. Postgres out of reach: it waits and tries
again, with a growing pause; nothing it holds is lost, since every claim is a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import structlog

from gateway.wake import Waker
from workers import render, sql
from workers.completer import Completer
from workers.delivery import attempt, decide, record_on_span, span_attributes, triage
from workers.state import WorkerState

log = structlog.get_logger("leadgate.claimer")

# At most this many deliveries per claim statement.
CLAIM_MAX = 100
# With part of its slots busy, the loop waits until this share of them is free before it claims
# again, so a backlog is claimed in batches rather than one delivery per finished send.
CLAIM_SHARE = 4
# How often a worker looks in Postgres while its wake-ups cannot arrive (Redis down).
UNWOKEN_POLL = 1.0
# After a failed claim (Postgres out of reach), the next try waits this long, doubling to MAX.
RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0


class Claimer:
    def __init__(
        self,
        state: WorkerState,
        completer: Completer,
        peers: Waker,
        wakeups_arrive: Callable[[], bool],
    ) -> None:
        self._state = state
        self._completer = completer
        self._peers = peers
        self._wakeups_arrive = wakeups_arrive
        self._concurrency = state.settings.worker_concurrency
        self._sending: dict[asyncio.Task[None], asyncpg.Record] = {}
        self._woken = asyncio.Event()
        self._room = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look in Postgres now (a wake-up arrived, or an ordered delivery ended)."""
        self._woken.set()

    @property
    def sending(self) -> int:
        return len(self._sending)

    async def run(self) -> None:
        delay = RETRY_DELAY
        while not self._stopping:
            free = self._concurrency - len(self._sending)
            if free <= 0 or (self._sending and free < self._concurrency // CLAIM_SHARE):
                await self._wait_for_room()
                continue
            self._woken.clear()
            limit = min(free, CLAIM_MAX)
            try:
                rows = await self._state.pool.fetch(sql.CLAIM, limit, self._state.lease_seconds)
                if self._stopping:  # claimed while a stop came: give them straight back
                    self._completer.put_back([(r, datetime.now(UTC)) for r in rows])
                    return
                if rows:
                    await self._dispatch(rows)
                if len(rows) == limit:
                    self._peers.wake()  # more may be due: an idle worker may take some
                    continue
                await self._idle(await self._state.pool.fetchval(sql.NEXT_DUE))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("claim_failed", error=type(e).__name__, retry_in=delay)
                await self._idle(None, pause=delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                continue
            delay = RETRY_DELAY

    async def _dispatch(self, rows: list[asyncpg.Record]) -> None:
        now = datetime.now(UTC)
        rows, bodies, failed = await render.prepare(self._state, rows)
        for outcome in failed:
            self._completer.add(outcome)
        sorted_ = await triage(self._state, rows, now)
        for outcome in sorted_.disabled:
            self._completer.add(outcome)
        if sorted_.later:
            self._completer.put_back(sorted_.later)
        for row in sorted_.send:
            task = asyncio.create_task(self._send(row, bodies[row["id"]]))
            self._sending[task] = row
            task.add_done_callback(self._sent)

    async def _send(self, row: asyncpg.Record, body: bytes) -> None:
        if self._state.tracing is None:
            result = await attempt(self._state, row, body)
            self._completer.add(decide(self._state, row, result))
            return
        with self._state.tracing.attempt_span(row["traceparent"], span_attributes(row)) as span:
            result = await attempt(self._state, row, body)
            outcome = decide(self._state, row, result)
            record_on_span(span, outcome)
        self._completer.add(outcome)

    def _sent(self, task: asyncio.Task[None]) -> None:
        row = self._sending.pop(task)
        if task.cancelled():
            self._completer.put_back([(row, datetime.now(UTC))])
        elif (error := task.exception()) is not None:
            log.error("send_failed", delivery_id=row["id"], exc_info=error)
            self._completer.put_back([(row, datetime.now(UTC))])
        self._room.set()

    async def _wait_for_room(self) -> None:
        self._room.clear()
        await self._room.wait()

    async def _idle(self, next_due: datetime | None, pause: float | None = None) -> None:
        """Sleep until woken, the next due time, or the longest interval allowed."""
        if pause is None:
            pause = self._state.settings.relay_interval
            if not self._wakeups_arrive():
                pause = min(pause, UNWOKEN_POLL)
            if next_due is not None:
                pause = min(pause, (next_due - datetime.now(UTC)).total_seconds())
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(pause, 0.0)):
                await self._woken.wait()

    async def stop(self, running: asyncio.Task[None], drain: float) -> None:
        """Claim no more; let sends in flight finish for `drain` seconds, then hand back the
        rest (cancelled sends put their deliveries back).

        `running` (the task of `run`) is let finish the claim it may be making, rather than
        cancelled in the middle of it: a claim Postgres made but nobody received would hold
        its deliveries until their leases ran out."""
        self._stopping = True
        self._woken.set()
        self._room.set()
        await asyncio.wait({running}, timeout=drain)
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=drain)
        for task in list(self._sending):
            task.cancel()
        if self._sending:
            await asyncio.wait(set(self._sending))
