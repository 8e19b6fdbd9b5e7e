"""The transactional outbox: events, and their deliveries, written with the change they record.

An event is immutable. Its body is the Standard Webhooks envelope
`{"id": "evt_…", "type": "lead.created", "timestamp": "…Z", "data": {…}}`, serialised once here
and stored as sent, so every delivery attempt signs and sends the same bytes.

Fan-out happens in the same statement: one delivery per event and matching enabled endpoint of
the tenant. So an event can never exist without its deliveries, nor a delivery without its event,
whatever crashes when; the worker's relay finds every delivery that is due from Postgres alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.constants import EVENT_PREFIX
from gateway.db import Conn
from gateway.dialects import jsjson
from gateway.ids import new_id

# An endpoint's `event_types` entry matches a type exactly, as `prefix.*`, or as `*`.
_MATCHES = """EXISTS (
    SELECT 1 FROM unnest(ep.event_types) AS p
    WHERE p = '*' OR p = ev.type OR (p LIKE '%.*' AND starts_with(ev.type, left(p, -1))))"""

# $7: the delay before a first attempt (the retry schedule's first entry), in seconds.
# $8: the one endpoint a test event goes to, regardless of its types (NULL for all).
WRITE_EVENTS = f"""
WITH ev AS (
    INSERT INTO events (id, tenant_id, type, lead_id, body, created_at, deliver_at)
    SELECT e.id, $1, e.type, e.lead_id, e.body, e.created_at, e.deliver_at
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                $9::timestamptz[]) AS e (id, type, lead_id, body, created_at, deliver_at)
    RETURNING id, type, lead_id, created_at, deliver_at
)
INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, lead_id, event_type,
                        next_attempt_at, enqueued_at, created_at, updated_at)
SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), $1, ev.id, ep.id, ev.lead_id,
       ev.type, coalesce(ev.deliver_at, ev.created_at + make_interval(secs => $7)),
       ev.created_at, ev.created_at, ev.created_at
FROM ev JOIN endpoints ep ON ep.tenant_id = $1 AND ep.enabled
WHERE CASE WHEN $8::text IS NULL THEN {_MATCHES} ELSE ep.id = $8 END
RETURNING id, next_attempt_at
"""


@dataclass(frozen=True, slots=True)
class Event:
    """An event about to be written: what happened, to which lead, and when."""

    type: str
    data: dict[str, Any]
    at: datetime
    lead_id: str | None = None
    deliver_at: datetime | None = None


def envelope(event_id: str, event: Event) -> bytes:
    # JavaScript-stable, so receivers that re-serialise the parsed body get these bytes back.
    return jsjson.dumps(
        {"id": event_id, "type": event.type, "timestamp": event.at, "data": event.data}
    )


@dataclass(frozen=True, slots=True)
class Outbox:
    """Writes events and their deliveries inside the caller's transaction.

    `due` collects the ids of deliveries that are due at once, for the caller to signal the
    worker after its commit; a lost signal only delays them until the relay's next sweep.
    """

    first_delay: float = 0.0

    async def write(
        self,
        conn: Conn,
        tenant_id: str,
        events: list[Event],
        due: list[str] | None = None,
        *,
        only_endpoint: str | None = None,
    ) -> list[str]:
        """Write events and fan them out; returns the events' ids in order."""
        if not events:
            return []
        # Sorted, so that the ids of one change's events follow the order they were written in.
        ids = sorted(new_id(EVENT_PREFIX) for _ in events)
        rows = await conn.fetch(
            WRITE_EVENTS,
            tenant_id,
            ids,
            [e.type for e in events],
            [e.lead_id for e in events],
            [envelope(i, e).decode() for i, e in zip(ids, events, strict=True)],
            [e.at for e in events],
            self.first_delay,
            only_endpoint,
            [e.deliver_at for e in events],
        )
        if due is not None:
            latest = max(e.at for e in events)
            due.extend(r["id"] for r in rows if r["next_attempt_at"] <= latest)
        return ids


@dataclass(slots=True)
class Tx:
    """One request's transaction: its connection, the tenant it acts for, and its outbox.

    Domain code writes through it; the request signals `due` to the worker once committed.
    """

    conn: Conn
    tenant_id: str
    key_id: str | None
    outbox: Outbox
    due: list[str] = field(default_factory=list)

    async def emit(self, *events: Event, only_endpoint: str | None = None) -> list[str]:
        return await self.outbox.write(
            self.conn, self.tenant_id, list(events), self.due, only_endpoint=only_endpoint
        )
