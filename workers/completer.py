"""The completer: what the worker's attempts decided, written to Postgres in batches.

Senders hand each outcome here and move on. Every few milliseconds (or when enough have
gathered) one flush writes them all: the attempts and the deliveries' new states in one
statement, the deliveries put back for later in another, then each touched endpoint's health in
one more. Every outcome is logged and published for `leadgate tail` as it arrives.

Should Postgres be out of reach, outcomes wait here and the flush is tried again until it
succeeds; a worker killed meanwhile leaves leases that expire, and those deliveries are sent
again (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import orjson
import structlog

from gateway import metrics
from gateway.db import Conn, is_unavailable
from workers import sql
from workers.delivery import Outcome
from workers.state import WorkerState

log = structlog.get_logger("leadgate.delivery")

# A flush waits this long for more outcomes to share it, unless FLUSH_ITEMS have gathered.
FLUSH_DELAY = 0.005
FLUSH_ITEMS = 200
# After a failed flush (Postgres out of reach), the next try waits this long, doubling to MAX.
RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 5.0


class Completer:
    def __init__(self, state: WorkerState, on_ended: Callable[[], None]) -> None:
        self._state = state
        self._outcomes: list[Outcome] = []
        self._later: list[tuple[asyncpg.Record, datetime]] = []
        self._gathered = asyncio.Event()
        self._full = asyncio.Event()
        self._on_ended = on_ended  # ordered deliveries ended: their successors may go now

    def add(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        _announce(self._state, outcome)
        self._signal()

    def put_back(self, rows: list[tuple[asyncpg.Record, datetime]]) -> None:
        """Deliveries claimed but not attempted, due again at the given times."""
        self._later += rows
        self._signal()

    def _signal(self) -> None:
        self._gathered.set()
        if len(self._outcomes) + len(self._later) >= FLUSH_ITEMS:
            self._full.set()

    def _restore(
        self, outcomes: list[Outcome], later: list[tuple[asyncpg.Record, datetime]]
    ) -> None:
        self._outcomes[:0], self._later[:0] = outcomes, later
        self._signal()

    @property
    def waiting(self) -> int:
        return len(self._outcomes) + len(self._later)

    async def run(self) -> None:
        """Flush until cancelled; a failed flush keeps its outcomes and is tried again."""
        delay = RETRY_DELAY
        while True:
            await self._gathered.wait()
            if not self._full.is_set():
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_DELAY):
                        await self._full.wait()
            if await self.flush():
                delay = RETRY_DELAY
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def flush(self) -> bool:
        """Write what has gathered; False (and nothing lost) if Postgres could not take it."""
        outcomes, later = self._outcomes, self._later
        self._outcomes, self._later = [], []
        self._gathered.clear()
        self._full.clear()
        if not outcomes and not later:
            return True
        try:
            await _write(self._state, outcomes, later)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            self._restore(outcomes, later)
            level = log.warning if is_unavailable(e) else log.error
            level("record_failed", outcomes=len(outcomes), error=type(e).__name__)
            return False
        except BaseException:
            self._restore(outcomes, later)  # cancelled mid-write (a stop): close() writes them
            raise
        if any(o.row["ordered"] for o in outcomes):
            self._on_ended()
        return True

    async def close(self, patience: float) -> None:
        """Flush what is left, trying for up to `patience` seconds."""
        deadline = asyncio.get_running_loop().time() + patience
        while not await self.flush():
            if asyncio.get_running_loop().time() > deadline:
                log.error("record_abandoned", outcomes=self.waiting)
                return
            await asyncio.sleep(RETRY_DELAY)


async def _write(
    state: WorkerState, outcomes: list[Outcome], later: list[tuple[asyncpg.Record, datetime]]
) -> None:
    # One transaction: a flush cut short (Postgres gone, a stop) leaves nothing half-written to
    # be written twice when it is tried again.
    async with state.pool.acquire() as conn, conn.transaction():
        if outcomes:
            await _record(conn, outcomes)
        if later:
            await conn.execute(sql.RELEASE, [r["id"] for r, _ in later], [t for _, t in later])
        if outcomes:
            await _update_health(state, conn, outcomes)


async def _record(conn: Conn, outcomes: list[Outcome]) -> None:
    tried = [(o, o.attempt) for o in outcomes if o.attempt is not None]
    args = (
        [o.row["id"] for o, _ in tried],
        [o.row["attempt_count"] + 1 for o, _ in tried],
        [a.started_at for _, a in tried],
        [a.status for _, a in tried],
        [a.latency_ms for _, a in tried],
        [o.label for o, _ in tried],
        [a.error for _, a in tried],
        [a.response_body for _, a in tried],
        [o.row["tenant_id"] for o, _ in tried],
        [o.row["id"] for o in outcomes],
        [o.state for o in outcomes],
        [int(o.attempt is not None) for o in outcomes],
        [o.row["tries"] + (o.attempt is not None) for o in outcomes],
        [o.next_attempt_at for o in outcomes],
        [o.attempt.status if o.attempt else None for o in outcomes],
        [o.error for o in outcomes],
    )
    try:
        async with conn.transaction():  # a savepoint, so the flush may try again
            await conn.execute(sql.RECORD, *args)
    except asyncpg.ForeignKeyViolationError:
        # A delivery was deleted (with its endpoint) between the statement's look and its
        # insert; looking again leaves it out.
        await conn.execute(sql.RECORD, *args)


async def _update_health(state: WorkerState, conn: Conn, outcomes: list[Outcome]) -> None:
    """Successes clear failures on record, failures count (unless the endpoint also
    succeeded in this flush), a 410 disables; endpoints that end disabled fail their waiting
    deliveries."""
    to_clear: set[str] = set()
    healthy: set[str] = set()
    failures: dict[str, int] = defaultdict(int)
    gone: set[str] = set()
    for o in outcomes:
        if o.attempt is None or not o.receiver_asked:
            continue
        endpoint = o.row["endpoint_id"]
        if o.attempt.ok:
            healthy.add(endpoint)
            # Only an endpoint with failures on record has anything for a success to clear.
            if o.row["consecutive_failures"] or o.row["failing_since"] is not None:
                to_clear.add(endpoint)
        elif o.attempt.status == 410:
            gone.add(endpoint)
        else:
            failures[endpoint] += 1
    touched = sorted(to_clear | gone | (failures.keys() - healthy))
    if not touched:
        return
    settings = state.settings
    rows = await conn.fetch(
        sql.UPDATE_HEALTH,
        touched,
        settings.circuit_failures,
        settings.circuit_cooldown,
        settings.endpoint_disable_after,
        [0 if e in healthy else failures.get(e, 0) for e in touched],
        [e in to_clear for e in touched],
        [e in gone for e in touched],
    )
    disabled = [r["id"] for r in rows if not r["enabled"]]
    if disabled:
        reasons = ["410 Gone" if e in gone else "failing too long" for e in disabled]
        kept = [o.row["id"] for o in outcomes]
        await conn.execute(sql.FAIL_PENDING_OF_ENDPOINTS, disabled, reasons, kept)
        for endpoint, reason in zip(disabled, reasons, strict=True):
            log.warning("endpoint_disabled", endpoint_id=endpoint, reason=reason)


def _announce(state: WorkerState, o: Outcome) -> None:
    """One log line per attempt, and the same on the outcomes channel for `leadgate tail`."""
    line = {
        "delivery_id": o.row["id"],
        "event_id": o.row["event_id"],
        "event_type": o.row["event_type"],
        "endpoint_id": o.row["endpoint_id"],
        "tenant_id": o.row["tenant_id"],
        "attempt": o.row["attempt_count"] + 1 if o.attempt else None,
        "status": o.attempt.status if o.attempt else None,
        "latency_ms": o.attempt.latency_ms if o.attempt else None,
        "outcome": o.label,
        "error": o.error,
        "next_attempt_at": o.next_attempt_at.isoformat() if o.next_attempt_at else None,
    }
    log.info("delivery_attempt", **line)
    metrics.DELIVERY_ATTEMPTS.labels(o.label).inc()
    if o.attempt is not None and o.receiver_asked:
        metrics.DELIVERY_LATENCY.observe(o.attempt.latency_ms / 1000)
    state.publisher.publish(orjson.dumps({**line, "at": datetime.now(UTC).isoformat()}))
