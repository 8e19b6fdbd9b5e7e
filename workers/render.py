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

import asyncpg

from gateway.dialects.templates import TemplateError, render
from workers.delivery import Outcome
from workers.sender import Attempt
from workers.state import WorkerState

TEMPLATE_ERROR = "template_error"

# Keep first renderings; a body already kept (a concurrent claim cannot exist) stays as it is.
SAVE_RENDERED = """
UPDATE deliveries d SET body = ($2::text[])[array_position($1::text[], d.id)]
WHERE d.id = ANY ($1::text[]) AND d.body IS NULL
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
) -> tuple[list[asyncpg.Record], dict[str, bytes], list[Outcome]]:
    """The claimed deliveries that can be sent, each one's body by delivery id, and the
    outcomes of those whose template failed (for the completer to record).

    First renderings are kept on their rows before anything is sent."""
    bodies: dict[str, bytes] = {}
    fresh: list[tuple[str, str]] = []
    failed: list[Outcome] = []
    for row in rows:
        body = body_of(row)
        if isinstance(body, TemplateError):
            error = f"{TEMPLATE_ERROR}: {body}"
            attempt = Attempt(datetime.now(UTC), None, 0.0, error, None, None)
            failed.append(Outcome(row, attempt, "failed", None, error, receiver_asked=False))
            continue
        bodies[row["id"]] = body
        if row["template"] is not None and row["rendered_body"] is None:
            fresh.append((row["id"], body.decode()))
    if fresh:
        await state.pool.execute(SAVE_RENDERED, [i for i, _ in fresh], [b for _, b in fresh])
    return [r for r in rows if r["id"] in bodies], bodies, failed
