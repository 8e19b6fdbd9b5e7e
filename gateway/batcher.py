"""The batcher: group commit for every write of the API.

A request validates its input, hands its change to the batcher and waits for the commit. The
batcher collects the changes that arrive together — for at most `LEADGATE_BATCH_MAX_WAIT`, or
until `LEADGATE_BATCH_MAX_ITEMS` are waiting — and applies them in one transaction:

    claim idempotency keys (two statements) → take every key lock (one statement, sorted)
    → set-based kinds (postbacks: fetch candidates, write leads and history: two statements)
    → the batch's events and deliveries (one statement)
    → each other change, alone in a savepoint → store idempotent responses (one statement)
    → COMMIT → answer every request → one wake-up for the worker

With tracing on (gateway/tracing.py), a batch is one `leadgate.batch` span under its first
request, linked to every request; each request gets a `leadgate.commit` span linked to it, and
its events keep the request's `traceparent`.

Every guarantee holds per request: nothing is answered before its commit; a request's 4xx
(a 409, a 404, a 422) is its own and leaves the rest of the batch alone. Should the batch fail
in Postgres as a whole (a constraint a concurrent writer won, a deadlock), each request is
applied again on its own. With Postgres out of reach, every request of the batch is answered
503 `unavailable` with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from gateway import idempotency
from gateway.crypto import Cipher
from gateway.db import Conn, conflict_of, is_unavailable, lock_keys
from gateway.errors import ApiError, InternalError, Unavailable
from gateway.events import Event, Outbox, Tx
from gateway.tracing import Tracing
from gateway.wake import Waker

log = structlog.get_logger("leadgate.batcher")

Outcome = web.Response | ApiError
# A change applied alone: given its share of the transaction, it answers its request.
Change = Callable[[Tx], Awaitable[web.Response]]
# A kind of change applied set-based for all of a batch's requests of that kind at once: one
# outcome per payload, in order, and the events to write, each with the index of the payload
# that made it (its request's tenant and trace are the event's).
Applier = Callable[
    [Conn, list[Any], datetime], Awaitable[tuple[Sequence[Outcome], list[tuple[int, Event]]]]
]

# How long a client should wait before retrying when Postgres is out of reach.
RETRY_AFTER_SECONDS = 1


@dataclass(eq=False)
class Item:
    """One request's change, waiting for its batch."""

    tenant_id: str
    key_id: str | None
    idem: idempotency.Key | None
    lock_ids: Sequence[int] = ()
    change: Change | None = None
    applier: Applier | None = None
    payload: Any = None
    # Its response holds a secret: stored under the key encrypted, like the secret itself.
    sealed: bool = False
    arrived: float = 0.0
    future: asyncio.Future[web.Response] = field(init=False)
    # With tracing on: the request's span, its traceparent (saved with its events), when it
    # arrived (ns since the epoch, the commit span's start) and the span of its batch.
    span: Any = None
    traceparent: str | None = None
    arrived_ns: int = 0
    batch_span: Any = None


def unavailable() -> Unavailable:
    return Unavailable(
        "Postgres is out of reach; nothing was changed or it was not confirmed: retry shortly "
        "(with the same Idempotency-Key)",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class Batcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        outbox: Outbox,
        waker: Waker,
        cipher: Cipher,
        *,
        max_items: int,
        max_wait: float,
        concurrency: int,
        idempotency_ttl: int,
        tracing: Tracing | None = None,
    ) -> None:
        self._pool = pool
        self._outbox = outbox
        self._waker = waker
        self._cipher = cipher
        self._max_items = max_items
        self._max_wait = max_wait
        self._concurrency = concurrency
        self._ttl = idempotency_ttl
        self._tracing = tracing
        self._pending: list[Item] = []
        self._running: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._draining = False

    async def submit(self, item: Item) -> web.Response:
        """Queue a change; returns its response once its batch has committed (or raises)."""
        loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        item.arrived = loop.time()
        if self._tracing is not None:
            item.span, item.traceparent = self._tracing.current()
            item.arrived_ns = time.time_ns()
        self._pending.append(item)
        if self._timer is None or len(self._pending) >= self._max_items:
            self._kick()
        return await item.future

    def _kick(self) -> None:
        """Start every batch that may start now; otherwise wait for the oldest one's deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending and len(self._running) < self._concurrency:
            wait = self._pending[0].arrived + self._max_wait - loop.time()
            if wait > 0 and len(self._pending) < self._max_items and not self._draining:
                self._timer = loop.call_later(wait, self._kick)
                return
            batch = self._pending[: self._max_items]
            del self._pending[: self._max_items]
            task = asyncio.create_task(self._flush(batch))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._kick()

    async def drain(self) -> None:
        """Apply everything queued, without waiting for deadlines (shutdown)."""
        self._draining = True
        while self._pending or self._running:
            self._kick()
            if self._running:
                await asyncio.wait(set(self._running))

    async def _flush(self, items: list[Item]) -> None:
        if self._tracing is None:
            await self._flush_batch(items)
            return
        with self._tracing.batch_span([i.span for i in items if i.span is not None]) as span:
            for item in items:
                item.batch_span = span
            await self._flush_batch(items)

    async def _flush_batch(self, items: list[Item]) -> None:
        try:
            outcomes, due = await self._commit(items)
        except Exception as e:
            await self._failed(items, e)
            return
        for item, outcome in zip(items, outcomes, strict=True):
            self._settle(item, outcome, len(items))
        if due:
            self._waker.wake()

    async def _failed(self, items: list[Item], error: Exception) -> None:
        if is_unavailable(error):
            log.warning("batch_unavailable", items=len(items), error=type(error).__name__)
            for item in items:
                self._settle(item, unavailable(), len(items))
        elif len(items) > 1:
            # One request's change failed the batch as a whole: apply each on its own.
            log.info("batch_split", items=len(items), error=type(error).__name__)
            for item in items:
                await self._flush([item])
        elif isinstance(error, asyncpg.UniqueViolationError):
            self._settle(items[0], conflict_of(error), 1)
        else:
            log.error("batch_failed", items=len(items), exc_info=error)
            for item in items:
                self._settle(item, InternalError("an internal error occurred"), len(items))

    def _settle(self, item: Item, outcome: Outcome, size: int) -> None:
        _settle(item, outcome)
        if self._tracing is not None and item.span is not None:
            self._tracing.commit_span(
                item.span, item.batch_span, item.arrived_ns, size, outcome.status
            )

    async def _commit(self, items: list[Item]) -> tuple[list[Outcome], int]:
        now = datetime.now(UTC)
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._apply(conn, items, now)

    async def _apply(
        self, conn: Conn, items: list[Item], now: datetime
    ) -> tuple[list[Outcome], int]:
        outcomes: dict[Item, Outcome] = {}
        keyed = [i for i in items if i.idem is not None]
        if keyed:
            claims = await idempotency.claim(
                conn, [i.idem for i in keyed if i.idem], self._ttl, self._cipher
            )
            outcomes.update((i, c) for i, c in zip(keyed, claims, strict=True) if c is not None)
        live = [i for i in items if i not in outcomes]
        await lock_keys(conn, [lock for i in live for lock in i.lock_ids])
        due = await self._apply_sets(conn, [i for i in live if i.applier], now, outcomes)
        alone = len(items) == 1
        for item in live:
            if item.change is not None:
                outcome, made_due = await _apply_one(conn, item, self._outbox, savepoint=not alone)
                outcomes[item] = outcome
                due += made_due
        await idempotency.store(
            conn,
            [(i.idem, r, i.sealed) for i in keyed
             if i in live and isinstance(r := outcomes[i], web.Response) and i.idem is not None],
            self._cipher,
        )  # fmt: skip
        return [outcomes[i] for i in items], due

    async def _apply_sets(
        self, conn: Conn, items: list[Item], now: datetime, outcomes: dict[Item, Outcome]
    ) -> int:
        """Apply each set-based kind to its requests at once; write all their events."""
        kinds: dict[Applier, list[Item]] = {}
        for item in items:
            assert item.applier is not None
            kinds.setdefault(item.applier, []).append(item)
        events: list[tuple[str, Event]] = []
        for applier, group in kinds.items():
            results, made = await applier(conn, [i.payload for i in group], now)
            outcomes.update(zip(group, results, strict=True))
            events += [(group[i].tenant_id, _traced(e, group[i].traceparent)) for i, e in made]
        _, due = await self._outbox.write(conn, events)
        return due


def _traced(event: Event, traceparent: str | None) -> Event:
    """The event, carrying its request's trace (with tracing on)."""
    return event if traceparent is None else dataclasses.replace(event, traceparent=traceparent)


async def _apply_one(
    conn: Conn, item: Item, outbox: Outbox, *, savepoint: bool
) -> tuple[Outcome, int]:
    """A change applied alone; in a batch, in a savepoint so its failure stays its own."""
    assert item.change is not None
    tx = Tx(conn, item.tenant_id, item.key_id, outbox, traceparent=item.traceparent)
    scope = conn.transaction() if savepoint else contextlib.nullcontext()
    try:
        async with scope:
            return await item.change(tx), tx.due
    except ApiError as e:
        return e, 0
    except asyncpg.UniqueViolationError as e:
        return conflict_of(e), 0
    except asyncpg.PostgresError as e:
        if is_unavailable(e) or not savepoint:
            raise
        log.error("change_failed", exc_info=e)
        return InternalError("an internal error occurred"), 0


def _settle(item: Item, outcome: Outcome) -> None:
    if item.future.done():  # the request was cancelled (its client hung up)
        return
    if isinstance(outcome, ApiError):
        item.future.set_exception(outcome)
    else:
        item.future.set_result(outcome)
