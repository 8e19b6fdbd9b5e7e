"""The leads' database side: a batch of postbacks in three statements, and single-lead changes.

`apply_postbacks` runs inside the batch's transaction (`gateway.batcher`): it locks the batch's
matching keys, fetches and locks every lead they could match, resolves the postbacks in arrival
order (`gateway.leads.ingest`), and writes every lead and history row in one statement. The
events go to the caller, which writes the whole batch's outbox at once.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import asyncpg

from gateway.constants import COUNTER_SHARDS
from gateway.db import Conn, conflict_of
from gateway.errors import NotFound
from gateway.events import Tx
from gateway.leads import sql
from gateway.leads.ingest import (
    STORED,
    LeadDict,
    Plan,
    Postback,
    StageMove,
    change_events,
    key_lock_id,
    lead_json,
    plan,
)
from gateway.scoring.rules import RuleSet, apply_score


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
    quotas = {p.tenant_id: p.quota for p in postbacks if p.quota is not None}
    creating = sorted(t for t in quotas if result.created.get(t))
    if creating:
        # Only now, and only for tenants that create: the lock is held until the commit.
        used = {
            r["tenant_id"]: r["created"] for r in await conn.fetch(sql.LOCK_QUOTA, creating, now)
        }
        remaining = {t: max(quotas[t] - used.get(t, 0), 0) for t in creating}
        if any(result.created[t] > remaining[t] for t in creating):
            result = plan(candidates, postbacks, now, remaining)
    if result.inserts or result.updates:
        await write_plan(conn, result, now, shard_zero=set(creating))
    return result


def _columns(rows: list[LeadDict]) -> list[list[Any]]:
    return [[row[c] for row in rows] for c in sql.LEAD_ROW]


def _counts(result: Plan, shard_zero: set[str]) -> list[list[Any]]:
    """The counters' rows: one per tenant, in tenant order. A quota-bound tenant counts in the
    shard its quota check locked; others in one of a few, so batches rarely share a row."""
    tenants = sorted(set(result.created) | set(result.converted))
    shards = [0 if t in shard_zero else random.randrange(COUNTER_SHARDS) for t in tenants]
    return [
        tenants,
        shards,
        [result.created.get(t, 0) for t in tenants],
        [result.converted.get(t, 0) for t in tenants],
    ]


async def write_plan(
    conn: Conn, result: Plan, now: datetime, shard_zero: set[str] | None = None
) -> None:
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
        *_counts(result, shard_zero or set()),
    )


def patch_lock_ids(tenant_id: str, values: dict[str, Any]) -> list[int]:
    """The key locks a manual change takes: the keys it gives the lead."""
    return [
        key_lock_id(tenant_id, kind, values[kind])
        for kind in ("external_id", "email", "phone")
        if values.get(kind)
    ]


async def save_change(
    tx: Tx,
    current: LeadDict,
    merged: LeadDict,
    move: StageMove | None,
    now: datetime,
    *,
    scoring: RuleSet | None = None,
    converts: bool = False,
) -> LeadDict:
    """Write one changed lead (scored again under `scoring`), its stage move and its events; a
    change of nothing writes nothing. `converts`: the lead reaches a converted stage for the
    first time, so it is counted."""
    apply_score(scoring, merged)
    changed = {col for col in STORED if merged[col] != current[col]}
    if not changed:
        return current
    merged["updated_at"] = now
    reached = move.to_stage if move is not None else None
    try:
        await tx.conn.execute(
            sql.UPDATE_LEAD, merged["id"], now, reached, converts, *(merged[c] for c in STORED)
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
