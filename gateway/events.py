"""The transactional outbox: events written in the same transaction as the change they record.

An event is immutable. Its body is the Standard Webhooks envelope
`{"id": "evt_…", "type": "lead.created", "timestamp": "…Z", "data": {…}}`, serialised once here
and stored as sent, so every delivery attempt signs and sends the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway import jsonio
from gateway.constants import EVENT_PREFIX
from gateway.db import Conn
from gateway.ids import new_id

INSERT_EVENTS = """
INSERT INTO events (id, tenant_id, type, lead_id, body, created_at)
SELECT e.id, $1, e.type, e.lead_id, e.body, e.created_at
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
    AS e (id, type, lead_id, body, created_at)
"""

LIST_EVENTS_OF_TENANT = """
SELECT id, type, lead_id, body, created_at FROM events WHERE tenant_id = $1 ORDER BY id
"""


@dataclass(frozen=True, slots=True)
class Event:
    """An event about to be written: what happened, to which lead, and when."""

    type: str
    data: dict[str, Any]
    at: datetime
    lead_id: str | None = None


def envelope(event_id: str, event: Event) -> bytes:
    return jsonio.dumps(
        {"id": event_id, "type": event.type, "timestamp": event.at, "data": event.data}
    )


async def write_events(conn: Conn, tenant_id: str, events: list[Event]) -> list[str]:
    """Write events inside the caller's transaction; returns their ids in order."""
    if not events:
        return []
    ids = [new_id(EVENT_PREFIX) for _ in events]
    await conn.execute(
        INSERT_EVENTS,
        tenant_id,
        ids,
        [e.type for e in events],
        [e.lead_id for e in events],
        [envelope(i, e).decode() for i, e in zip(ids, events, strict=True)],
        [e.at for e in events],
    )
    return ids
