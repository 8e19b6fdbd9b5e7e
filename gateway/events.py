"""The transactional outbox: events, and their deliveries, written with the change they record.

An event is immutable. Its body is the Standard Webhooks envelope
`{"id": "evt_…", "type": "lead.created", "timestamp": "…Z", "data": {…}}`, serialised once here
and stored as sent, so every delivery attempt signs and sends the same bytes.

Fan-out happens in the same statement: one delivery per event and matching enabled endpoint of
the event's tenant. So an event can never exist without its deliveries, nor a delivery without
its event, whatever crashes when; the worker finds every delivery that is due from Postgres
alone. One statement writes the events of a whole batch, whatever tenants they belong to.
"""

from __future__ import annotations

import dataclasses
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

# $8: the delay before a first attempt (the retry schedule's first entry), in seconds.
# $9: the one endpoint a test event goes to, regardless of its types (NULL for all).
# $10: the moment up to which a delivery counts as due now (for the wake-up after commit).
# Deliveries are inserted in event order, so `seq` follows it; `first_due_at` is the database's
# clock, which the leads' row locks order as they order the changes (ordered endpoints rely on
# both).
# $11: each event's W3C traceparent (NULL with tracing off), continued by its attempts.
WRITE_EVENTS = f"""
WITH ev AS (
    INSERT INTO events (id, tenant_id, type, lead_id, body, created_at, deliver_at, traceparent)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::timestamptz[], $11::text[])
    RETURNING id, tenant_id, type, lead_id, created_at, deliver_at
), dl AS (
    INSERT INTO deliveries (id, tenant_id, event_id, endpoint_id, lead_id, event_type, ordered,
                            first_due_at, next_attempt_at, created_at, updated_at)
    SELECT 'dlv_' || replace(gen_random_uuid()::text, '-', ''), ev.tenant_id, ev.id, ep.id,
           ev.lead_id, ev.type, ep.ordered, coalesce(ev.deliver_at, clock_timestamp()),
           coalesce(ev.deliver_at, ev.created_at + make_interval(secs => $8)),
           ev.created_at, ev.created_at
    FROM ev JOIN endpoints ep ON ep.tenant_id = ev.tenant_id AND ep.enabled
    WHERE CASE WHEN $9::text IS NULL THEN {_MATCHES} ELSE ep.id = $9 END
    ORDER BY ev.id, ep.id
    RETURNING next_attempt_at
)
SELECT count(*) FILTER (WHERE next_attempt_at <= $10) FROM dl
"""


@dataclass(frozen=True, slots=True)
class Event:
    """An event about to be written: what happened, to which lead, and when."""

    type: str
    data: dict[str, Any]
    at: datetime
    lead_id: str | None = None
    deliver_at: datetime | None = None
    # The W3C traceparent of the request that made it (tracing on), continued by its attempts.
    traceparent: str | None = None


def envelope(event_id: str, event: Event) -> bytes:
    # JavaScript-stable, so receivers that re-serialise the parsed body get these bytes back.
    return jsjson.dumps(
        {"id": event_id, "type": event.type, "timestamp": event.at, "data": event.data}
    )


@dataclass(frozen=True, slots=True)
class Outbox:
    """Writes events and their deliveries inside the caller's transaction."""

    first_delay: float = 0.0

    async def write(
        self, conn: Conn, events: list[tuple[str, Event]], *, only_endpoint: str | None = None
    ) -> tuple[list[str], int]:
        """Write `(tenant_id, event)` pairs and fan them out, in order.

        Returns the events' ids, and how many of their deliveries are due at once (for the
        caller to wake a worker after its commit; a lost wake-up only delays them until a
        worker's next look at Postgres).
        """
        if not events:
            return [], 0
        ids = [new_id(EVENT_PREFIX) for _ in events]  # increasing, so in the order written
        due = await conn.fetchval(
            WRITE_EVENTS,
            ids,
            [tenant for tenant, _ in events],
            [e.type for _, e in events],
            [e.lead_id for _, e in events],
            [envelope(i, e).decode() for i, (_, e) in zip(ids, events, strict=True)],
            [e.at for _, e in events],
            [e.deliver_at for _, e in events],
            self.first_delay,
            only_endpoint,
            max(e.at for _, e in events),
            [e.traceparent for _, e in events],
        )
        return ids, due


@dataclass(slots=True)
class Tx:
    """One change's share of a transaction: its connection, tenant, key and outbox.

    Domain code writes through it; `due` counts the deliveries it made due at once, for the
    batch to wake a worker once committed.
    """

    conn: Conn
    tenant_id: str
    key_id: str | None
    outbox: Outbox
    due: int = field(default=0)
    # The request's traceparent (tracing on): its events carry it.
    traceparent: str | None = None

    async def emit(self, *events: Event, only_endpoint: str | None = None) -> list[str]:
        if self.traceparent is not None:
            events = tuple(dataclasses.replace(e, traceparent=self.traceparent) for e in events)
        pairs = [(self.tenant_id, e) for e in events]
        ids, due = await self.outbox.write(self.conn, pairs, only_endpoint=only_endpoint)
        self.due += due
        return ids
