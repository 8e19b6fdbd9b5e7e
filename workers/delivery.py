"""The deliver job: claim due deliveries, send each signed, record every attempt.

Postgres holds each delivery's state; this job holds a lease on a delivery while sending it.
Per claimed delivery, in order: a disabled endpoint fails it; an open circuit or the endpoint's
rate limit puts it back for later without an attempt; otherwise it is sent, and the attempt is
recorded with the delivery's new state in one statement per batch, then logged and published
for `leadgate tail`. A retry is signalled to arq for its due time; the relay covers lost signals.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import structlog
from redis.exceptions import RedisError

from gateway import metrics
from gateway.constants import DELIVER_JOB, OUTCOMES_CHANNEL
from gateway.signing import sign_headers
from workers import render, sql
from workers.sender import Attempt, post
from workers.state import STATE, WorkerState

log = structlog.get_logger("leadgate.delivery")

# Deliveries claimed per statement: large enough to amortise the round trips, small enough that
# a batch's attempts start well within their lease.
CHUNK = 50
# Retry delays vary by this fraction either way, so a receiver's outage does not end in a herd.
JITTER = 0.1
# How long deliveries held back by an open circuit's probe, or a rate limit, wait at least.
PROBE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What becomes of one claimed delivery."""

    row: asyncpg.Record
    attempt: Attempt | None
    state: str
    next_attempt_at: datetime | None
    error: str | None


async def deliver(ctx: dict[str, Any], delivery_ids: list[str]) -> int:
    """arq job: deliver these if they are (still) due; returns how many attempts were made."""
    state: WorkerState = ctx[STATE]
    made = 0
    for chunk in _chunks(delivery_ids, CHUNK):
        made += await deliver_batch(state, chunk)
    return made


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def deliver_batch(state: WorkerState, ids: list[str]) -> int:
    rows = await state.pool.fetch(sql.CLAIM, ids, state.lease_seconds)
    rows, bodies = await render.prepare(state, rows)  # the body each sends; template errors end
    if not rows:
        return 0
    now = datetime.now(UTC)
    # Past this moment an attempt could outlive its lease; it is put back instead.
    start_by = time.monotonic() + state.lease_seconds - state.settings.delivery_timeout - 1
    to_send, later, disabled = await _triage(state, rows, now)
    tasks = [
        asyncio.create_task(_attempt(state, row, bodies[row["id"]], start_by)) for row in to_send
    ]
    try:
        await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # Shutdown: keep what finished, hand the rest back to Postgres at once.
        finished = [
            (r, a) for r, t in zip(to_send, tasks, strict=True) if (a := _result(t)) is not None
        ]
        unfinished = [r for r, t in zip(to_send, tasks, strict=True) if _result(t) is None]
        await asyncio.shield(_finish(state, finished, later + [(r, now) for r in unfinished], []))
        raise
    attempts = [(row, task.result()) for row, task in zip(to_send, tasks, strict=True)]
    back = later + [(row, now) for row, attempt in attempts if attempt is None]
    await _finish(state, [(r, a) for r, a in attempts if a is not None], back, disabled)
    return sum(1 for _, a in attempts if a is not None)


def _result(task: asyncio.Task[Attempt | None]) -> Attempt | None:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return None


async def _triage(
    state: WorkerState, rows: list[asyncpg.Record], now: datetime
) -> tuple[list[asyncpg.Record], list[tuple[asyncpg.Record, datetime]], list[asyncpg.Record]]:
    """Split claimed deliveries into: send now, put back until a time, fail (disabled)."""
    settings = state.settings
    to_send, later, disabled = [], [], []
    probing: set[str] = set()
    for row in rows:
        endpoint = row["endpoint_id"]
        if not row["enabled"]:
            disabled.append(row)
        elif row["circuit_open_until"] is not None and row["circuit_open_until"] > now:
            later.append((row, row["circuit_open_until"]))
        elif row["consecutive_failures"] >= settings.circuit_failures and (
            endpoint in probing or not await _win_probe(state, endpoint)
        ):
            # Half-open: one probe decides; the others wait for its verdict.
            later.append((row, now + timedelta(seconds=min(settings.circuit_cooldown, PROBE_WAIT))))
        elif row["rate_limit"] and (wait := await _rate_wait(state, row)) > 0:
            later.append((row, now + timedelta(seconds=wait)))
        else:
            if row["consecutive_failures"] >= settings.circuit_failures:
                probing.add(endpoint)
            to_send.append(row)
    return to_send, later, disabled


async def _win_probe(state: WorkerState, endpoint_id: str) -> bool:
    """Across all workers, one delivery probes a half-open endpoint per lease period."""
    try:
        won = await state.redis.set(
            f"leadgate:probe:{endpoint_id}", b"1", nx=True, px=int(state.lease_seconds * 1000)
        )
    except (RedisError, OSError):
        return True  # without Redis, probing more than once beats not delivering
    return bool(won)


async def _rate_wait(state: WorkerState, row: asyncpg.Record) -> float:
    """Seconds this delivery must wait for its endpoint's rate limit (0: send now).

    Without Redis the limit cannot be shared, so it is not applied (fail open)."""
    wait = await state.endpoint_rate.acquire(row["endpoint_id"], row["rate_limit"], row["id"])
    return wait or 0.0


async def _attempt(
    state: WorkerState, row: asyncpg.Record, body: bytes, start_by: float
) -> Attempt | None:
    settings = state.settings
    async with state.slots:
        if time.monotonic() > start_by:
            return None
        secrets_ = [row["secret"]] + ([row["previous_secret"]] if row["previous_secret"] else [])
        headers = {**row["headers"], "Content-Type": "application/json"}
        headers.update(
            sign_headers(row["signature"], secrets_, row["event_id"], int(time.time()), body)
        )
        return await post(
            state.http,
            row["url"],
            headers,
            body,
            timeout=settings.delivery_timeout,
            allow_private=settings.allow_private_destinations,
        )


def decide(state: WorkerState, row: asyncpg.Record, attempt: Attempt) -> Outcome:
    """The delivery's next state after this attempt, by the retry schedule."""
    settings = state.settings
    if attempt.ok:
        return Outcome(row, attempt, "succeeded", None, None)
    if attempt.status == 410:
        return Outcome(row, attempt, "failed", None, "http_410: the endpoint is gone")
    tries = row["tries"] + 1
    if tries >= len(settings.retry_schedule):
        return Outcome(row, attempt, "failed", None, attempt.error)
    delay = settings.retry_schedule[tries] * random.uniform(1 - JITTER, 1 + JITTER)
    if attempt.status in (429, 503) and attempt.retry_after is not None:
        delay = max(delay, min(attempt.retry_after, settings.retry_after_cap))
    next_at = attempt.started_at + timedelta(milliseconds=attempt.latency_ms + delay * 1000)
    return Outcome(row, attempt, "pending", next_at, attempt.error)


async def _finish(
    state: WorkerState,
    attempts: list[tuple[asyncpg.Record, Attempt]],
    later: list[tuple[asyncpg.Record, datetime]],
    disabled: list[asyncpg.Record],
) -> None:
    outcomes = [decide(state, row, attempt) for row, attempt in attempts]
    outcomes += [Outcome(r, None, "failed", None, "endpoint_disabled") for r in disabled]
    if outcomes:
        await _record(state, outcomes)
    if later:
        await state.pool.execute(
            sql.RELEASE, [r["id"] for r, _ in later], [when for _, when in later]
        )
    await _update_endpoints(state, outcomes)
    retries = [(o.row["id"], o.next_attempt_at) for o in outcomes if o.state == "pending"]
    await signal_later(state, retries + [(r["id"], when) for r, when in later])
    await _announce(state, outcomes)


async def _record(state: WorkerState, outcomes: list[Outcome]) -> None:
    tried = [o for o in outcomes if o.attempt is not None]
    await state.pool.execute(
        sql.RECORD,
        [o.row["id"] for o in tried],
        [o.row["attempt_count"] + 1 for o in tried],
        [o.attempt.started_at for o in tried if o.attempt],
        [o.attempt.status for o in tried if o.attempt],
        [o.attempt.latency_ms for o in tried if o.attempt],
        [o.state if o.state != "pending" else "retrying" for o in tried],
        [o.attempt.error for o in tried if o.attempt],
        [o.attempt.response_body for o in tried if o.attempt],
        [o.row["id"] for o in outcomes],
        [o.state for o in outcomes],
        [int(o.attempt is not None) for o in outcomes],
        [o.row["tries"] + (o.attempt is not None) for o in outcomes],
        [o.next_attempt_at for o in outcomes],
        [o.next_attempt_at for o in outcomes],
        [o.attempt.status if o.attempt else None for o in outcomes],
        [o.error for o in outcomes],
        [o.row["tenant_id"] for o in tried],
    )


@dataclass
class _Health:
    """What one batch's attempts say about each endpoint."""

    to_clear: set[str] = field(default_factory=set)  # succeeded, with failures on record
    healthy: set[str] = field(default_factory=set)  # succeeded at least once
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    gone: set[str] = field(default_factory=set)  # answered 410


def _tally(outcomes: list[Outcome]) -> _Health:
    health = _Health()
    for o in outcomes:
        if o.attempt is None:
            continue
        endpoint = o.row["endpoint_id"]
        if o.attempt.ok:
            health.healthy.add(endpoint)
            # Only an endpoint with failures on record has anything for a success to clear.
            if o.row["consecutive_failures"] or o.row["failing_since"] is not None:
                health.to_clear.add(endpoint)
        elif o.attempt.status == 410:
            health.gone.add(endpoint)
        else:
            health.failures[endpoint] += 1
    return health


async def _update_endpoints(state: WorkerState, outcomes: list[Outcome]) -> None:
    settings = state.settings
    health = _tally(outcomes)
    ids_here = [o.row["id"] for o in outcomes]
    for endpoint in health.to_clear:
        await state.pool.execute(sql.ENDPOINT_SUCCEEDED, endpoint)
    for endpoint, count in health.failures.items():
        if endpoint in health.healthy:
            continue
        row = await state.pool.fetchrow(
            sql.ENDPOINT_FAILED,
            endpoint,
            count,
            settings.circuit_failures,
            settings.circuit_cooldown,
            settings.endpoint_disable_after,
        )
        if row is not None and not row["enabled"]:
            await _fail_pending(state, endpoint, "endpoint disabled: failing too long", ids_here)
    for endpoint in health.gone:
        await state.pool.execute(sql.DISABLE_ENDPOINT, endpoint, "the receiver answered 410 Gone")
        await _fail_pending(state, endpoint, "endpoint disabled: 410 Gone", ids_here)


async def _fail_pending(state: WorkerState, endpoint_id: str, reason: str, keep: list[str]) -> None:
    await state.pool.execute(sql.FAIL_PENDING_OF_ENDPOINT, endpoint_id, reason, keep)
    log.warning("endpoint_disabled", endpoint_id=endpoint_id, reason=reason)


async def signal_later(state: WorkerState, due: list[tuple[str, datetime | None]]) -> None:
    """Signal each delivery for its due time; the relay sweeps up any signal that is lost."""
    now = datetime.now(UTC)
    try:
        for delivery_id, when in due:
            if when is not None and when > now:
                await state.redis.enqueue_job(DELIVER_JOB, [delivery_id], _defer_until=when)
    except (RedisError, OSError):
        log.warning("signal_failed", deliveries=len(due))


async def _announce(state: WorkerState, outcomes: list[Outcome]) -> None:
    """One log line per attempt, and the same on the outcomes channel for `leadgate tail`."""
    messages = []
    for o in outcomes:
        line = {
            "delivery_id": o.row["id"],
            "event_id": o.row["event_id"],
            "event_type": o.row["event_type"],
            "endpoint_id": o.row["endpoint_id"],
            "tenant_id": o.row["tenant_id"],
            "attempt": o.row["attempt_count"] + 1 if o.attempt else None,
            "status": o.attempt.status if o.attempt else None,
            "latency_ms": o.attempt.latency_ms if o.attempt else None,
            "outcome": "retrying" if o.state == "pending" else o.state,
            "error": o.error,
            "next_attempt_at": o.next_attempt_at.isoformat() if o.next_attempt_at else None,
        }
        log.info("delivery_attempt", **line)
        metrics.DELIVERY_ATTEMPTS.labels(line["outcome"]).inc()
        if o.attempt is not None:
            metrics.DELIVERY_LATENCY.observe(o.attempt.latency_ms / 1000)
        messages.append(orjson.dumps({**line, "at": datetime.now(UTC).isoformat()}))
    if not messages:
        return
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(OUTCOMES_CHANNEL, message)
            await pipe.execute()
    except (RedisError, OSError):
        pass  # tail is a live view; the attempts are on record in Postgres
