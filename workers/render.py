"""The body each claimed delivery sends: its event, or what its endpoint's template makes of it.

A templated delivery is rendered once, at its first attempt, and the bytes are kept on the
delivery row, so every retry signs and sends exactly the same body (a manual retry or replay
clears them, so that the endpoint's current template renders it again). A template that fails on
an event ends that delivery `failed` at once with one `template_error` attempt: the receiver was
never asked, so its health is untouched and nothing is retried until someone fixes the template
and retries or replays the delivery.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from redis.exceptions import RedisError

from gateway import metrics
from gateway.constants import OUTCOMES_CHANNEL
from gateway.dialects.templates import TemplateError, render
from workers.state import WorkerState

log = structlog.get_logger("leadgate.delivery")

TEMPLATE_ERROR = "template_error"

# Keep first renderings; a body already kept (a concurrent claim cannot exist) stays as it is.
SAVE_RENDERED = """
UPDATE deliveries d SET body = u.body
FROM unnest($1::text[], $2::text[]) AS u (id, body)
WHERE d.id = u.id AND d.body IS NULL
"""

# One attempt per delivery whose template failed, and the delivery ends `failed` with it.
FAIL_RENDERING = """
WITH attempts AS (
    INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status, latency_ms,
                                   outcome, error, tenant_id)
    SELECT u.id, u.attempt, now(), NULL, 0, 'failed', u.error, u.tenant_id
    FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS u (id, attempt, error, tenant_id)
)
UPDATE deliveries d SET state = 'failed', attempt_count = d.attempt_count + 1, tries = d.tries + 1,
    next_attempt_at = NULL, enqueued_at = NULL, leased_until = NULL, last_error = u.error,
    updated_at = now()
FROM unnest($1::text[], $3::text[]) AS u (id, error)
WHERE d.id = u.id AND d.state = 'pending'
"""


def body_of(row: asyncpg.Record) -> bytes | TemplateError:
    """The bytes this delivery sends, or why its template cannot make them.

    `row` carries the event's `body`, the endpoint's `template` and any `rendered_body` kept."""
    if row["rendered_body"] is not None:
        return bytes(row["rendered_body"].encode())
    try:
        return render(row["body"], row["template"])
    except TemplateError as e:
        return e


async def prepare(
    state: WorkerState, rows: list[asyncpg.Record]
) -> tuple[list[asyncpg.Record], dict[str, bytes]]:
    """The claimed deliveries that can be sent, with each one's body by delivery id.

    First renderings are kept on their rows; template failures are recorded and left out."""
    bodies: dict[str, bytes] = {}
    fresh: list[tuple[str, str]] = []
    broken: list[tuple[asyncpg.Record, str]] = []
    for row in rows:
        body = body_of(row)
        if isinstance(body, TemplateError):
            broken.append((row, f"{TEMPLATE_ERROR}: {body}"))
            continue
        bodies[row["id"]] = body
        if row["template"] is not None and row["rendered_body"] is None:
            fresh.append((row["id"], body.decode()))
    if fresh:
        await state.pool.execute(SAVE_RENDERED, [i for i, _ in fresh], [b for _, b in fresh])
    if broken:
        await _fail(state, broken)
    return [r for r in rows if r["id"] in bodies], bodies


async def _fail(state: WorkerState, broken: list[tuple[asyncpg.Record, str]]) -> None:
    await state.pool.execute(
        FAIL_RENDERING,
        [r["id"] for r, _ in broken],
        [r["attempt_count"] + 1 for r, _ in broken],
        [error for _, error in broken],
        [r["tenant_id"] for r, _ in broken],
    )
    messages = []
    for row, error in broken:
        line = _line(row, error)
        log.warning("delivery_attempt", **line)
        metrics.DELIVERY_ATTEMPTS.labels("failed").inc()
        messages.append(orjson.dumps({**line, "at": datetime.now(UTC).isoformat()}))
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(OUTCOMES_CHANNEL, message)
            await pipe.execute()
    except (RedisError, OSError):
        pass  # tail is a live view; the attempts are on record in Postgres


def _line(row: asyncpg.Record, error: str) -> dict[str, Any]:
    """The same fields as every other attempt's log line and `leadgate tail` message."""
    return {
        "delivery_id": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "endpoint_id": row["endpoint_id"],
        "tenant_id": row["tenant_id"],
        "attempt": row["attempt_count"] + 1,
        "status": None,
        "latency_ms": 0,
        "outcome": "failed",
        "error": error,
        "next_attempt_at": None,
    }
