"""Opting a lead out (or in again) by hand: `PATCH /v1/leads/{id}` with `opted_out`.

Opting out does what an inbound opt-out does (`gateway.inbound.views`): it sets `opted_out_at`
and cancels every pending delivery of the lead, scheduled follow-ups included. Unlike an inbound
opt-out, the change is announced as `lead.updated`. Opting in again clears `opted_out_at`; what
was cancelled stays cancelled.
"""

from __future__ import annotations

from datetime import datetime

from gateway.deliveries.sql import STOP_LEAD
from gateway.events import Event, Tx
from gateway.leads.ingest import STORED, LeadDict

SET_OPTED_OUT = """
UPDATE leads SET opted_out_at = $3, updated_at = $4 WHERE id = $1 AND tenant_id = $2
"""


async def set_opted_out(tx: Tx, lead: LeadDict, opted_out: bool, now: datetime) -> bool:
    """Mark `lead` (locked by the caller) opted out or in; whether that changed anything.

    Runs before the change's events are written, so it cancels only what was pending before.
    """
    if opted_out == (lead["opted_out_at"] is not None):
        return False
    at = now if opted_out else None
    await tx.conn.execute(SET_OPTED_OUT, lead["id"], tx.tenant_id, at, now)
    if opted_out:
        await tx.conn.execute(STOP_LEAD, lead["id"], tx.tenant_id)
    lead["opted_out_at"] = at
    lead["updated_at"] = now
    return True


async def announce(tx: Tx, current: LeadDict, merged: LeadDict, now: datetime) -> None:
    """`lead.updated` for an opt-out, unless the change's other fields (or its score, which may
    read `opted_out_at`) already wrote one."""
    if all(merged[c] == current[c] for c in STORED if c != "stage"):
        await tx.emit(Event("lead.updated", dict(merged), now, merged["id"]))
