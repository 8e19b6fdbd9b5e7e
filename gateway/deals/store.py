"""Deals' database side and events, shared by the deals API, the lead detail and erasure.

A deal's events carry the deal as the API shows it, and belong to the lead the deal has after
the change (`events.lead_id`): they show in that lead's timeline and deliveries, and go in the
lead's order to an ordered endpoint.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from gateway.db import Conn
from gateway.deals import sql
from gateway.events import Event, Tx

DealDict = dict[str, Any]

# How many of a lead's deals its detail lists, newest first (GET /v1/deals?lead_id= has all).
LEAD_DEALS = 20

# The columns a PATCH may change, in UPDATE_DEAL's order ($3…$9).
EDITABLE = ("lead_id", "title", "value", "currency", "stage", "probability", "custom_data")


def money(value: Decimal | None) -> float | None:
    """An exact amount as a JSON number: numeric(15, 4) has at most 15 digits, so the double
    nearest it prints back as the same decimal."""
    return None if value is None else float(value)


def deal_json(row: asyncpg.Record) -> DealDict:
    deal = dict(row)
    deal["value"] = money(row["value"])
    return deal


def change_events(
    previous: DealDict, deal: DealDict, changed: set[str], at: datetime
) -> list[Event]:
    """`deal.updated` for a change of fields, `deal.stage_changed` for a new stage (or both)."""
    events = []
    if changed - {"stage"}:
        events.append(Event("deal.updated", dict(deal), at, deal["lead_id"]))
    if "stage" in changed:
        data = {**deal, "previous_stage": previous["stage"]}
        events.append(Event("deal.stage_changed", data, at, deal["lead_id"]))
    return events


async def deals_of_lead(conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str) -> list[Any]:
    rows = await conn.fetch(sql.DEALS_OF_LEAD, lead_id, tenant_id, LEAD_DEALS)
    return [deal_json(r) for r in rows]


async def unlink_lead(tx: Tx, lead_id: str, at: datetime) -> None:
    """On a lead's erasure: its deals lose their lead, each announced as `deal.updated`."""
    rows = await tx.conn.fetch(sql.UNLINK_LEAD, lead_id, tx.tenant_id, at)
    await tx.emit(*(Event("deal.updated", deal_json(r), at, None) for r in rows))


def _figures(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "deals": row["deals"],
        "value": float(row["value"]),
        "weighted_value": float(row["weighted_value"]),
    }


async def pipeline(conn: Conn | asyncpg.Pool, tenant_id: str) -> list[dict[str, Any]]:
    """Every deal the tenant has now, per currency and, within it, per stage (largest value
    first; a stage-less deal counts under stage null)."""
    per_currency: dict[str, dict[str, Any]] = {}
    stages: dict[str, list[dict[str, Any]]] = {}
    for row in await conn.fetch(sql.PIPELINE, tenant_id):
        if row["by_stage"]:
            stages.setdefault(row["currency"], []).append({"stage": row["stage"], **_figures(row)})
        else:
            per_currency[row["currency"]] = {"currency": row["currency"], **_figures(row)}
    out = []
    for currency in sorted(per_currency):
        ranked = sorted(stages.get(currency, []), key=lambda s: (-s["value"], str(s["stage"])))
        out.append({**per_currency[currency], "stages": ranked})
    return out
