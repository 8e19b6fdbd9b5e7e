"""The leads' database side: a batch of postbacks in three statements, and single-lead changes.

`apply_postbacks` runs inside the batch's transaction (`gateway.batcher`): it locks the batch's
matching keys, fetches and locks every lead they could match, resolves the postbacks in arrival
order (`gateway.leads.ingest`), and writes every lead and history row in one statement. The
events go to the caller, which writes the whole batch's outbox at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from gateway.db import Conn, conflict_of
from gateway.errors import NotFound
from gateway.events import Tx
from gateway.leads import sql
from gateway.leads.ingest import (
    WRITABLE,
    LeadDict,
    Plan,
    Postback,
    StageMove,
    change_events,
    key_lock_id,
    lead_json,
    plan,
)


async def apply_postbacks(conn: Conn, postbacks: list[Postback], now: datetime) -> Plan:
    """Match, merge and write a batch of postbacks; the caller holds their key locks
    (`Postback.lock_ids`)."""
    candidates = await conn.fetch(
        sql.FETCH_CANDIDATES,
        [p.tenant_id for p in postbacks],
        [p.lead_id for p in postbacks],
        [p.values.get("external_id") for p in postbacks],
        [p.values.get("email") for p in postbacks],
        [p.phone for p in postbacks],
    )
    result = plan(candidates, postbacks, now)
    if result.inserts or result.updates:
        await write_plan(conn, result, now)
    return result


def _columns(rows: list[LeadDict]) -> list[list[Any]]:
    return [[row[c] for row in rows] for c in sql.LEAD_ROW]


async def write_plan(conn: Conn, result: Plan, now: datetime) -> None:
    history = result.history
    await conn.execute(
        sql.WRITE_LEADS,
        now,
        *_columns(result.inserts),
        *_columns(result.updates),
        [h.tenant_id for h in history],
        [h.lead_id for h in history],
        [h.move.from_stage for h in history],
        [h.move.to_stage for h in history],
        [h.move.forced for h in history],
        [h.key_id for h in history],
    )


def patch_lock_ids(tenant_id: str, values: dict[str, Any]) -> list[int]:
    """The key locks a manual change takes: the keys it gives the lead."""
    return [
        key_lock_id(tenant_id, kind, values[kind])
        for kind in ("external_id", "email", "phone")
        if values.get(kind)
    ]


async def save_change(
    tx: Tx, current: LeadDict, merged: LeadDict, move: StageMove | None, now: datetime
) -> LeadDict:
    """Write one changed lead, its stage move and its events; a change of nothing writes nothing."""
    changed = {col for col in WRITABLE if merged[col] != current[col]}
    if not changed:
        return current
    merged["updated_at"] = now
    reached = move.to_stage if move is not None else None
    try:
        await tx.conn.execute(
            sql.UPDATE_LEAD, merged["id"], now, reached, *(merged[c] for c in WRITABLE)
        )
    except asyncpg.UniqueViolationError as e:
        raise conflict_of(e) from e
    if move is not None:
        await tx.conn.execute(
            sql.INSERT_STAGE_CHANGE, tx.tenant_id, merged["id"], move.from_stage,
            move.to_stage, move.forced, tx.key_id, now,
        )  # fmt: skip
    await tx.emit(*change_events(merged, changed, move, now))
    return merged


async def get_lead(conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str) -> LeadDict:
    row = await conn.fetchrow(sql.GET_LEAD, lead_id, tenant_id)
    if row is None:
        raise NotFound(f"no lead with id {lead_id!r}")
    return lead_json(row)
