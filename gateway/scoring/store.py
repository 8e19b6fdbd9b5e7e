"""Scoring's database side: a tenant's rule set saved (API and CLI) with its rescore started,
read back with the rescore's progress, and one lead scored again after a change outside a batch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from gateway.constants import RESCORE_START_DELAY_SECONDS
from gateway.db import Conn
from gateway.events import Event, Tx
from gateway.leads.ingest import lead_json
from gateway.scoring import sql
from gateway.scoring.models import ScoringIn
from gateway.scoring.rules import SCORE_FIELDS, RuleSet, score_of


def scoring_json(config: dict[str, Any] | None, rescore: asyncpg.Record | None) -> dict[str, Any]:
    """The rule set as `GET /v1/scoring` shows it, with its rescore's progress."""
    config = config or {}
    progress = None
    if rescore is not None and rescore["version"] == config.get("version"):
        progress = {k: rescore[k] for k in
                    ("state", "done", "total", "changed", "started_at", "finished_at")}  # fmt: skip
    return {
        "rules": config.get("rules", []),
        "tiers": config.get("tiers", []),
        "version": config.get("version", 0),
        "updated_at": config.get("updated_at"),
        "rescore": progress,
    }


async def read_scoring(conn: Conn | asyncpg.Pool, tenant_id: str) -> dict[str, Any]:
    config = await conn.fetchval(sql.GET_SCORING, tenant_id)
    rescore = await conn.fetchrow(sql.GET_RESCORE, tenant_id)
    return scoring_json(config, rescore)


async def save_scoring(
    conn: Conn, tenant_id: str, spec: ScoringIn, *, delay: float = RESCORE_START_DELAY_SECONDS
) -> tuple[dict[str, Any], bool] | None:
    """Replace the tenant's rule set and start rescoring its leads; (the rule set as shown, and
    whether it changed). The same rules again change nothing and start nothing. None: no tenant.
    """
    current = await conn.fetchrow(sql.LOCK_SCORING, tenant_id)
    if current is None:
        return None
    config = current["scoring"] or {}
    rules = [r.model_dump() for r in spec.rules]
    tiers = [t.model_dump() for t in spec.tiers]
    if config and config.get("rules") == rules and config.get("tiers") == tiers:
        return await read_scoring(conn, tenant_id), False
    new = {
        "version": int(config.get("version", 0)) + 1,
        "rules": rules,
        "tiers": tiers,
        "updated_at": datetime.now(UTC).isoformat(),
    }
    await conn.execute(sql.SET_SCORING, tenant_id, new)
    rescore = await conn.fetchrow(sql.START_RESCORE, tenant_id, new["version"], delay)
    return scoring_json(new, rescore), True


def scored_changes(rules: RuleSet | None, leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leads whose score, tier or breakdown `rules` change, with their new ones set."""
    changed = []
    for lead in leads:
        new = score_of(rules, lead)
        if new != tuple(lead[f] for f in SCORE_FIELDS):
            lead.update(zip(SCORE_FIELDS, new, strict=True))
            changed.append(lead)
    return changed


async def write_scores(conn: Conn, leads: list[dict[str, Any]], now: datetime) -> None:
    await conn.execute(
        sql.SET_SCORES,
        now,
        [lead["id"] for lead in leads],
        [lead["score"] for lead in leads],
        [lead["score_tier"] for lead in leads],
        [lead["score_breakdown"] for lead in leads],
    )


async def rescore_lead(tx: Tx, lead_id: str, rules: RuleSet | None, now: datetime) -> None:
    """Score one lead again after a change that did not go through scoring (an opt-out); a new
    score is written and announced as `lead.updated`."""
    row = await tx.conn.fetchrow(sql.GET_LEAD_FOR_SCORE, lead_id, tx.tenant_id)
    if row is None:
        return
    changed = scored_changes(rules, [lead_json(row)])
    if changed:
        lead = changed[0]
        lead["updated_at"] = now
        await write_scores(tx.conn, changed, now)
        await tx.emit(Event("lead.updated", lead, now, lead_id))
