"""One claimed delivery: may it be sent now, the signed attempt, and what becomes of it.

Per claimed delivery, in order: a disabled endpoint fails it; an open circuit, or the endpoint's
rate limit, puts it back for later without an attempt; otherwise it is signed and sent, and the
retry schedule decides its next state. Recording happens in batches (`workers.completer`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from gateway.signing import sign_headers
from workers.sender import Attempt, post
from workers.state import WorkerState

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
    # False when the receiver was never asked (a template failed): its health is not judged.
    receiver_asked: bool = True

    @property
    def label(self) -> str:
        """As logs and `leadgate tail` show it: a pending delivery is being retried."""
        return "retrying" if self.state == "pending" else self.state


@dataclass(slots=True)
class Triage:
    """Claimed deliveries split into: send now, put back until a time, fail (disabled)."""

    send: list[asyncpg.Record]
    later: list[tuple[asyncpg.Record, datetime]]
    disabled: list[Outcome]


async def triage(state: WorkerState, rows: list[asyncpg.Record], now: datetime) -> Triage:
    settings = state.settings
    result = Triage([], [], [])
    probing: set[str] = set()
    for row in rows:
        endpoint = row["endpoint_id"]
        if not row["enabled"]:
            result.disabled.append(Outcome(row, None, "failed", None, "endpoint_disabled"))
        elif row["circuit_open_until"] is not None and row["circuit_open_until"] > now:
            result.later.append((row, row["circuit_open_until"]))
        elif row["consecutive_failures"] >= settings.circuit_failures and (
            endpoint in probing or not await _win_probe(state, endpoint)
        ):
            # Half-open: one probe decides; the others wait for its verdict.
            wait = min(settings.circuit_cooldown, PROBE_WAIT)
            result.later.append((row, now + timedelta(seconds=wait)))
        elif row["rate_limit"] and (wait := await _rate_wait(state, row)) > 0:
            result.later.append((row, now + timedelta(seconds=wait)))
        else:
            if row["consecutive_failures"] >= settings.circuit_failures:
                probing.add(endpoint)
            result.send.append(row)
    return result


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


async def attempt(state: WorkerState, row: asyncpg.Record, body: bytes) -> Attempt:
    """Sign and POST `body` (see `workers.render`); never raises for what the receiver does."""
    settings = state.settings
    # Secrets are stored encrypted (gateway/crypto.py); decrypted only to sign.
    stored = (row["secret"], row["previous_secret"])
    secrets_ = [state.cipher.decrypt_text(s) for s in stored if s]
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


def span_attributes(row: asyncpg.Record) -> dict[str, Any]:
    """What an attempt's span says of its delivery (tracing on)."""
    return {
        "leadgate.delivery.id": row["id"],
        "leadgate.event.id": row["event_id"],
        "leadgate.event.type": row["event_type"],
        "leadgate.endpoint.id": row["endpoint_id"],
        "leadgate.tenant.id": row["tenant_id"],
        "leadgate.attempt": row["attempt_count"] + 1,
    }


def record_on_span(span: Any, outcome: Outcome) -> None:
    """The attempt's result on its span: the receiver's status, the outcome, an error."""
    span.set_attribute("leadgate.outcome", outcome.label)
    if outcome.attempt is not None and outcome.attempt.status is not None:
        span.set_attribute("http.response.status_code", outcome.attempt.status)
    if outcome.error:
        from opentelemetry.trace import StatusCode

        span.set_attribute("error.type", outcome.error)
        span.set_status(StatusCode.ERROR, outcome.error)


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
