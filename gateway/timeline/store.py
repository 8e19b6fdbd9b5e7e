"""Reading a lead's timeline: a page of items from its three sources, each with its deliveries.

Sources: inbound events linked to the lead (`message`), the outbox events about it (published
follow-ups, lead.* and deal.* changes; a lead.stage_changed event shows as its stage move, an
inbound event's fan-out as its message), and its stage history (`stage_change`, kept for ever).
The outbox and inbound events are pruned after LEADGATE_RETENTION_DAYS, so the timeline shows
what Leadgate still keeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway import cursors, jsonio
from gateway.db import Conn
from gateway.timeline import sql

# Where a provider's message keeps its text: the first of these that holds a string.
TEXT_KEYS = ("text", "body", "message", "content")

# Later than anything written: the first page's key.
_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


def _decode(cursor: str | None) -> tuple[Any, int, str | None, int | None]:
    if cursor is None:
        return _END_OF_TIME, sql.FIRST_RANK, None, None
    at, rank, text_id, seq = cursors.decode(cursor, 4)
    if rank not in (sql.MESSAGE, sql.EVENT, sql.STAGE):
        raise cursors.invalid()
    if rank == sql.STAGE:
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 < seq < 2**63:
            raise cursors.invalid()
        return cursors.moment(at), rank, None, seq
    return cursors.moment(at), rank, cursors.text(text_id), None


def _json(text: str | None) -> Any:
    try:
        return jsonio.loads(text) if text is not None else None
    except jsonio.JSONDecodeError:
        return None


def _message(row: asyncpg.Record) -> dict[str, Any]:
    payload = _json(row["body"])
    fields = payload if isinstance(payload, dict) else {}
    channel = fields.get("channel")
    text = next((fields[k] for k in TEXT_KEYS if isinstance(fields.get(k), str)), None)
    return {
        "kind": "message", "at": row["at"], "id": row["id"], "type": row["type"],
        "source": row["source"], "channel": channel if isinstance(channel, str) else None,
        "text": text, "payload": payload, "event_id": row["event_id"],
    }  # fmt: skip


def _event_kind(event_type: str) -> str:
    prefix = event_type.split(".", 1)[0]
    return {"lead": "lead_change", "deal": "deal_change"}.get(prefix, "follow_up")


def _event(row: asyncpg.Record) -> dict[str, Any]:
    envelope = _json(row["body"])
    data = envelope.get("data") if isinstance(envelope, dict) else None
    return {
        "kind": _event_kind(row["type"]), "at": row["at"], "id": row["id"], "type": row["type"],
        "data": data, "deliver_at": row["deliver_at"], "event_id": row["event_id"],
    }  # fmt: skip


def _stage(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "kind": "stage_change", "at": row["at"], "from_stage": row["from_stage"],
        "to_stage": row["to_stage"], "forced": row["forced"], "api_key_id": row["api_key_id"],
        "event_id": row["event_id"],
    }  # fmt: skip


_ITEM = {sql.MESSAGE: _message, sql.EVENT: _event, sql.STAGE: _stage}


async def page(
    conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the lead's items, newest first, and the cursor of the next (None: the last).

    The caller has checked that the lead is the tenant's.
    """
    rows = await conn.fetch(sql.PAGE, lead_id, tenant_id, *_decode(cursor), limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    items = [_ITEM[r["rank"]](r) for r in rows]
    event_ids = [i["event_id"] for i in items if i["event_id"]]
    deliveries: dict[str, list[dict[str, Any]]] = {}
    if event_ids:
        for d in await conn.fetch(sql.DELIVERIES, event_ids):
            delivery = dict(d)
            deliveries.setdefault(delivery.pop("event_id"), []).append(delivery)
    for item in items:
        if item["event_id"]:
            item["deliveries"] = deliveries.get(item["event_id"], [])
    if not more:
        return items, None
    last = rows[-1]
    return items, cursors.encode(last["at"], last["rank"], last["id"], last["seq"])


async def count(conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str) -> int:
    total: int = await conn.fetchval(sql.COUNT, lead_id, tenant_id)
    return total
