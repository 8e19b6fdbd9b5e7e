"""Tenants: who owns every row, and each tenant's stage pipeline and matching options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from gateway.constants import TENANT_PREFIX
from gateway.db import Conn
from gateway.ids import new_id

CREATE_TENANT = """
INSERT INTO tenants (id, name) VALUES ($1, $2)
RETURNING id, name, stages, exit_stages, match_phone, rate_limit, scope_rate_limits, created_at,
       converted_stages, monthly_quota
"""

GET_TENANT = """
SELECT id, name, stages, exit_stages, match_phone, rate_limit, scope_rate_limits, created_at,
       converted_stages, monthly_quota
FROM tenants WHERE id = $1
"""

LIST_TENANTS = """
SELECT id, name, stages, exit_stages, match_phone, rate_limit, scope_rate_limits, created_at,
       converted_stages, monthly_quota
FROM tenants ORDER BY created_at, id
"""

FIND_TENANT_BY_NAME = """
SELECT id, name, stages, exit_stages, match_phone, rate_limit, scope_rate_limits, created_at,
       converted_stages, monthly_quota
FROM tenants WHERE name = $1 ORDER BY created_at LIMIT 1
"""

# Each option is left as it is when its parameter is NULL.
UPDATE_TENANT = """
UPDATE tenants SET
    name = coalesce($2, name),
    stages = coalesce($3, stages),
    exit_stages = coalesce($4, exit_stages),
    match_phone = coalesce($5, match_phone),
    rate_limit = CASE WHEN $6::int IS NULL THEN rate_limit WHEN $6 = 0 THEN NULL ELSE $6 END,
    scope_rate_limits = CASE
        WHEN $7::text IS NULL THEN scope_rate_limits
        WHEN $8::int = 0 THEN scope_rate_limits - $7
        ELSE scope_rate_limits || jsonb_build_object($7, $8) END,
    converted_stages = CASE
        WHEN $9::text[] IS NULL THEN converted_stages
        WHEN cardinality($9) = 0 THEN NULL ELSE $9 END,
    monthly_quota = CASE
        WHEN $10::int IS NULL THEN monthly_quota WHEN $10 = 0 THEN NULL ELSE $10 END
WHERE id = $1
RETURNING id, name, stages, exit_stages, match_phone, rate_limit, scope_rate_limits, created_at,
       converted_stages, monthly_quota
"""


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A tenant's ordered stages, and the exit stages reachable from any of them."""

    stages: tuple[str, ...]
    exit_stages: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.stages + self.exit_stages

    def canonical(self, name: str) -> str | None:
        """The stage as the tenant spells it, matched without regard to case or spacing."""
        wanted = name.strip().casefold()
        return next((s for s in self.all if s.casefold() == wanted), None)

    def is_forward(self, current: str, target: str) -> bool:
        """Whether a postback may move a lead from `current` to `target` unforced.

        Exit stages are reachable from any pipeline stage; once a lead is in an exit stage only
        force (or a manual change) takes it anywhere else. A stage that has since been removed
        from the pipeline counts as the start of it.
        """
        if current in self.exit_stages:
            return False
        if target in self.exit_stages:
            return True
        rank = {s: i for i, s in enumerate(self.stages)}
        return rank[target] > rank.get(current, -1)


def parse_stage_list(text: str) -> tuple[str, ...]:
    """`"Form Started, Paid"` → `("Form Started", "Paid")`; rejects empties and duplicates."""
    stages = tuple(s.strip() for s in text.split(","))
    if any(not s for s in stages):
        raise ValueError("stage names cannot be empty")
    if len({s.casefold() for s in stages}) != len(stages):
        raise ValueError("stage names must be unique (case-insensitively)")
    return stages


def pipeline_of(row: asyncpg.Record | dict[str, Any]) -> Pipeline:
    return Pipeline(tuple(row["stages"]), tuple(row["exit_stages"]))


def tenant_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "stages": list(row["stages"]),
        "exit_stages": list(row["exit_stages"]),
        "match_phone": row["match_phone"],
        "rate_limit": row["rate_limit"],
        "scope_rate_limits": row["scope_rate_limits"],
        "converted_stages": list(row["converted_stages"] or row["stages"][-1:]),
        "monthly_quota": row["monthly_quota"],
        "created_at": row["created_at"].isoformat(),
    }


async def create_tenant(conn: Conn, name: str) -> asyncpg.Record:
    row = await conn.fetchrow(CREATE_TENANT, new_id(TENANT_PREFIX), name)
    assert row is not None
    return row


async def update_tenant(
    conn: Conn,
    tenant_id: str,
    *,
    name: str | None = None,
    stages: tuple[str, ...] | None = None,
    exit_stages: tuple[str, ...] | None = None,
    match_phone: bool | None = None,
    rate_limit: int | None = None,
    scope_rate_limit: tuple[str, int] | None = None,
    converted_stages: tuple[str, ...] | None = None,
    monthly_quota: int | None = None,
) -> asyncpg.Record | None:
    """Change a tenant's options; a rate limit of 0 returns to the default, as does an empty
    tuple of converted stages (the pipeline's last) and a monthly quota of 0 (none)."""
    if stages is not None or exit_stages is not None or converted_stages:
        current = await conn.fetchrow(GET_TENANT, tenant_id)
        if current is None:
            return None
        pipeline = Pipeline(
            stages or tuple(current["stages"]),
            exit_stages if exit_stages is not None else tuple(current["exit_stages"]),
        )
        if len({s.casefold() for s in pipeline.all}) != len(pipeline.all):
            raise ValueError("a stage cannot be both in the pipeline and an exit stage")
        if converted_stages:
            converted_stages = _canonical_stages(pipeline, converted_stages)
    return await conn.fetchrow(
        UPDATE_TENANT,
        tenant_id,
        name,
        list(stages) if stages is not None else None,
        list(exit_stages) if exit_stages is not None else None,
        match_phone,
        rate_limit,
        scope_rate_limit[0] if scope_rate_limit else None,
        scope_rate_limit[1] if scope_rate_limit else None,
        list(converted_stages) if converted_stages is not None else None,
        monthly_quota,
    )


def _canonical_stages(pipeline: Pipeline, names: tuple[str, ...]) -> tuple[str, ...]:
    """Stage names as the tenant spells them; ValueError naming one it does not have."""
    found = []
    for name in names:
        stage = pipeline.canonical(name)
        if stage is None:
            raise ValueError(f"{name!r} is not a stage; stages: {', '.join(pipeline.all)}")
        found.append(stage)
    return tuple(found)


SET_DEFAULT_CURRENCY = """
UPDATE tenants SET default_currency = $2 WHERE id = $1 RETURNING default_currency
"""

GET_DEFAULT_CURRENCY = "SELECT default_currency FROM tenants WHERE id = $1"


async def set_default_currency(conn: Conn, tenant_id: str, currency: str) -> str | None:
    """The currency a tenant's deals take when they name none; None if no such tenant.

    `currency` must be an ISO 4217 code (`gateway.deals.currencies.currency_code`)."""
    code: str | None = await conn.fetchval(SET_DEFAULT_CURRENCY, tenant_id, currency)
    return code
