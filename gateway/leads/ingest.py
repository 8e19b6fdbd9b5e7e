"""Ingestion: match an incoming lead to an existing one or create it, merge, move its stage.

Everything here runs inside the caller's transaction, and writes the lead, its stage history
and its events (the outbox) together, so a postback either happens whole or not at all.

Concurrency: before looking for a match, the postback takes transaction-scoped advisory locks
on its matching keys (external id, email, phone). Two postbacks that share a key are thereby
serialised; the second finds the lead the first created. The unique indexes on external id
and email stand behind the locks as a last line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.constants import LEAD_PREFIX
from gateway.db import Conn
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.events import Event, Tx
from gateway.ids import new_id
from gateway.keys import Principal
from gateway.leads import sql
from gateway.leads.models import NUMBER_FIELDS, TEXT_FIELDS, LeadFields, PostbackIn
from gateway.leads.normalize import InvalidValue, normalize_email, normalize_phone
from gateway.tenants import Pipeline

LeadDict = dict[str, Any]

# Which field a unique index protects, to name it in a 409.
_UNIQUE_FIELDS = {"leads_tenant_email": "email", "leads_tenant_external_id": "external_id"}


@dataclass(frozen=True, slots=True)
class IngestResult:
    lead: LeadDict
    created: bool
    stage_ignored: bool


@dataclass(frozen=True, slots=True)
class StageMove:
    from_stage: str | None
    to_stage: str
    forced: bool


def lead_json(row: asyncpg.Record | LeadDict) -> LeadDict:
    """A lead as the API shows it (and as lead events carry it)."""
    lead = {"id": row["id"]}
    lead.update({col: row[col] for col in sql.WRITABLE})
    lead["opted_out_at"] = row["opted_out_at"]
    lead["created_at"] = row["created_at"]
    lead["updated_at"] = row["updated_at"]
    return lead


def normalized_values(fields: LeadFields, default_region: str | None) -> dict[str, Any]:
    """The values a request sets, keys normalised; a 400 names every field that cannot be."""
    values = fields.model_dump(include={*TEXT_FIELDS, *NUMBER_FIELDS}, exclude_none=True)
    errors = {}
    if "email" in values:
        try:
            values["email"] = normalize_email(values["email"])
        except InvalidValue as e:
            errors["email"] = str(e)
    if "phone" in values:
        try:
            values["phone"] = normalize_phone(values["phone"], default_region)
        except InvalidValue as e:
            errors["phone"] = str(e)
    if errors:
        raise InvalidRequest("some fields have invalid values", fields=errors)
    return values


def resolve_stage(pipeline: Pipeline, name: str) -> str:
    stage = pipeline.canonical(name)
    if stage is None:
        allowed = ", ".join(pipeline.all)
        raise InvalidRequest(
            f"unknown stage {name!r}; allowed: {allowed}",
            fields={"stage": f"must be one of: {allowed}"},
        )
    return stage


def _key_lock_ids(tenant_id: str, values: dict[str, Any], match_phone: bool) -> list[int]:
    kinds = ["external_id", "email"] + (["phone"] if match_phone else [])
    ids = set()
    for kind in kinds:
        if value := values.get(kind):
            digest = hashlib.blake2b(f"{tenant_id}\0{kind}\0{value}".encode(), digest_size=8)
            ids.add(int.from_bytes(digest.digest(), "big", signed=True))
    return sorted(ids)


async def ingest(
    tx: Tx, who: Principal, postback: PostbackIn, default_region: str | None
) -> IngestResult:
    """Apply one postback: the contract's matching order, merge rules and stage pipeline."""
    values = normalized_values(postback, default_region)
    custom = {**(postback.custom_data or {}), **(postback.model_extra or {})}
    if custom:
        values["custom_data"] = custom
    target = resolve_stage(who.pipeline, postback.stage) if postback.stage else None
    now = datetime.now(UTC)
    conn = tx.conn

    if postback.lead_id:
        row = await conn.fetchrow(sql.LOCK_LEAD, postback.lead_id, who.tenant_id)
        if row is None:
            raise NotFound(f"no lead with id {postback.lead_id!r}")
    else:
        if lock_ids := _key_lock_ids(who.tenant_id, values, who.match_phone):
            await conn.execute(sql.LOCK_MATCH_KEYS, lock_ids)
        row = await conn.fetchrow(
            sql.MATCH_LEAD,
            who.tenant_id,
            values.get("external_id"),
            values.get("email"),
            values.get("phone") if who.match_phone else None,
        )

    if row is None:
        lead = await create_lead(tx, who.pipeline, values, target or who.pipeline.stages[0], now)
        return IngestResult(lead, created=True, stage_ignored=False)

    current = lead_json(row)
    merged = merge(current, values)
    move, stage_ignored = None, False
    if target is not None and target != current["stage"]:
        forward = who.pipeline.is_forward(current["stage"], target)
        if forward or postback.force_stage:
            merged["stage"] = target
            move = StageMove(current["stage"], target, forced=not forward)
        else:
            stage_ignored = True
    lead = await save_change(tx, current, merged, move, now)
    return IngestResult(lead, created=False, stage_ignored=stage_ignored)


def merge(current: LeadDict, values: dict[str, Any]) -> LeadDict:
    """Non-empty incoming values overwrite; custom_data merges by key; completion never drops."""
    merged = dict(current)
    for name, value in values.items():
        if name == "custom_data":
            merged[name] = {**current[name], **value}
        elif name == "form_completion_percent" and current[name] is not None:
            merged[name] = max(current[name], value)
        else:
            merged[name] = value
    return merged


async def create_lead(
    tx: Tx, pipeline: Pipeline, values: dict[str, Any], stage: str, now: datetime
) -> LeadDict:
    lead: LeadDict = {"id": new_id(LEAD_PREFIX)}
    lead.update({col: values.get(col) for col in sql.WRITABLE})
    lead["stage"] = stage
    lead["custom_data"] = values.get("custom_data", {})
    lead["opted_out_at"] = None
    lead["created_at"] = lead["updated_at"] = now
    furthest = stage if stage in pipeline.stages else pipeline.stages[0]
    async with _naming_conflicts():
        await tx.conn.execute(
            sql.INSERT_LEAD,
            lead["id"],
            tx.tenant_id,
            now,
            furthest,
            tx.key_id,
            *(lead[c] for c in sql.WRITABLE),
        )
    await tx.emit(Event("lead.created", lead, now, lead["id"]))
    return lead


async def save_change(
    tx: Tx,
    current: LeadDict,
    merged: LeadDict,
    move: StageMove | None,
    now: datetime,
) -> LeadDict:
    """Write a changed lead, its stage move and its events; a change of nothing writes nothing."""
    changed = {col for col in sql.WRITABLE if merged[col] != current[col]}
    if not changed:
        return current
    merged["updated_at"] = now
    async with _naming_conflicts():
        reached = move.to_stage if move is not None else None
        await tx.conn.execute(
            sql.UPDATE_LEAD, merged["id"], now, reached, *(merged[c] for c in sql.WRITABLE)
        )
    events = []
    if changed - {"stage"}:
        events.append(Event("lead.updated", merged, now, merged["id"]))
    if move is not None:
        await tx.conn.execute(
            sql.INSERT_STAGE_CHANGE,
            tx.tenant_id,
            merged["id"],
            move.from_stage,
            move.to_stage,
            move.forced,
            tx.key_id,
            now,
        )
        events.append(
            Event("lead.stage_changed", {**merged, "previous_stage": move.from_stage}, now,
                  merged["id"])
        )  # fmt: skip
    await tx.emit(*events)
    return merged


class _naming_conflicts:
    """Turn a unique-index violation into a 409 that names the field another lead holds."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, asyncpg.UniqueViolationError):
            field = _UNIQUE_FIELDS.get(exc.constraint_name or "", "lead")
            raise Conflict(
                f"another lead of this tenant already has this {field}",
                fields={field: "already used by another lead"},
            ) from exc


async def get_lead(conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str) -> LeadDict:
    row = await conn.fetchrow(sql.GET_LEAD, lead_id, tenant_id)
    if row is None:
        raise NotFound(f"no lead with id {lead_id!r}")
    return lead_json(row)
