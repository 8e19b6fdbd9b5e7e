"""`GET /v1/analytics`: leads in a range, the pipeline funnel, top sources and campaigns, new
leads per day, and delivery success and latency — each computed in Postgres.

Lead figures come from one pass over the range's leads (index-only on
`leads_tenant_created_id`) with GROUPING SETS; erased leads count, since their stage and
attribution are kept. The funnel counts a lead at every pipeline stage up to the furthest it
reached, so a lead now `lost` after reaching `qualified` still counts through `qualified`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.appkeys import POOL, PRINCIPAL
from gateway.deals.models import CurrencyPipeline
from gateway.deals.store import pipeline
from gateway.errors import InvalidRequest
from gateway.http import json_response, validate
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.types import Moment

RANGES = {"7d": 7, "30d": 30, "90d": 90}
TOP = 10

# One pass over the window's entries of leads_tenant_created_id, which carries every column read
# here (the score-tier mix included), so the scan is index-only once the table is vacuumed.
LEAD_FIGURES = """
SELECT GROUPING(furthest_stage) = 0 AS by_furthest, GROUPING(stage) = 0 AS by_stage,
       GROUPING(source) = 0 AS by_source, GROUPING(campaign) = 0 AS by_campaign,
       GROUPING(day) = 0 AS by_day, GROUPING(score_tier) = 0 AS by_tier,
       furthest_stage, stage, source, campaign, day, score_tier, unscored, count(*) AS leads
FROM (
    SELECT furthest_stage, stage, source, campaign, (created_at AT TIME ZONE 'UTC')::date AS day,
           score_tier, score IS NULL AS unscored
    FROM leads WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3
) l
GROUP BY GROUPING SETS ((furthest_stage), (stage), (source), (campaign), (day),
                        (score_tier, unscored), ())
"""

DELIVERY_FIGURES = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE outcome = 'succeeded') AS succeeded,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) AS latency
FROM delivery_attempts
WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3
"""


class AnalyticsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    range: Literal["7d", "30d", "90d"] | None = Field(None, description="Up to now.")
    from_: Moment | None = Field(None, alias="from")
    to: Moment | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> AnalyticsQuery:
        if self.range is not None and (self.from_ or self.to):
            raise ValueError("give range, or from/to, not both")
        return self


class StageCount(BaseModel):
    stage: str
    leads: int
    conversion: float | None = Field(description="Share of the range's leads that got here.")
    step_conversion: float | None = Field(description="Share of the previous stage's leads.")


class Named(BaseModel):
    name: str | None
    leads: int


class Day(BaseModel):
    date: str
    leads: int


class DeliveryFigures(BaseModel):
    attempts: int
    succeeded: int
    success_rate: float | None
    latency_ms: dict[str, float | None]


class ScoreTierMix(BaseModel):
    tiers: list[Named] = Field(
        description="Each of the account's tiers, highest first, then "
        "any tier since removed that leads still carry."
    )
    below_tiers: int = Field(description="Scored leads below every tier.")
    unscored: int = Field(description="Leads without a score (no rules when they last changed).")


class Analytics(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    leads: int
    funnel: list[StageCount]
    stages: list[Named]
    top_sources: list[Named]
    top_campaigns: list[Named]
    new_leads_per_day: list[Day]
    deliveries: DeliveryFigures
    score_tiers: ScoreTierMix
    pipeline: list[CurrencyPipeline] = Field(
        description="Every deal the tenant has now, whatever the range: per currency, by stage."
    )


class AnalyticsResponse(BaseModel):
    data: Analytics


def _window(query: AnalyticsQuery) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    if query.from_ or query.to:
        end = query.to or now
        try:
            start = query.from_ or end - timedelta(days=30)
        except OverflowError as e:  # `to` within 30 days of the year 1
            raise InvalidRequest("`to` is too early", fields={"to": "too early"}) from e
    else:
        end = now
        start = end - timedelta(days=RANGES[query.range or "30d"])
    if start >= end:
        raise InvalidRequest("`from` must be before `to`", fields={"from": "after to"})
    if end - start > timedelta(days=366):
        raise InvalidRequest("the range is at most 366 days", fields={"from": "too early"})
    return start, end


def funnel(
    stages: tuple[str, ...], furthest: dict[str | None, int], total: int
) -> list[dict[str, Any]]:
    """Leads at each stage or beyond; a lead with no recorded furthest stage counts at the first."""
    reached = [furthest.get(s, 0) for s in stages]
    reached[0] += furthest.get(None, 0) + sum(n for s, n in furthest.items() if s not in stages)
    rows: list[tuple[str, int]] = []
    beyond = 0
    for stage, here in reversed(list(zip(stages, reached, strict=True))):
        beyond += here
        rows.append((stage, beyond))
    rows.reverse()
    out: list[dict[str, Any]] = []
    previous: int | None = None
    for stage, count in rows:
        out.append({
            "stage": stage,
            "leads": count,
            "conversion": round(count / total, 4) if total else None,
            "step_conversion": round(count / previous, 4) if previous else None,
        })  # fmt: skip
        previous = count
    return out


def tier_mix(tiers: tuple[str, ...], rows: list[Any]) -> dict[str, Any]:
    """Leads per tier (the account's, then any others leads carry), below every tier, unscored."""
    counts: dict[str, int] = {}
    below = unscored = 0
    for r in rows:
        if r["unscored"]:
            unscored += r["leads"]
        elif r["score_tier"] is None:
            below += r["leads"]
        else:
            counts[r["score_tier"]] = r["leads"]
    names = list(tiers) + sorted(set(counts) - set(tiers))
    return {
        "tiers": [{"name": name, "leads": counts.get(name, 0)} for name in names],
        "below_tiers": below,
        "unscored": unscored,
    }


def _ranked(counts: dict[Any, int], limit: int | None = TOP) -> list[dict[str, Any]]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return [{"name": name, "leads": n} for name, n in ranked[:limit]]


@requires("read")
async def analytics(request: web.Request) -> web.Response:
    query = validate(AnalyticsQuery, dict(request.query))
    start, end = _window(query)
    who = request[PRINCIPAL]
    pool = request.app[POOL]
    lead_rows, delivery, deals = await asyncio.gather(
        pool.fetch(LEAD_FIGURES, who.tenant_id, start, end),
        pool.fetchrow(DELIVERY_FIGURES, who.tenant_id, start, end),
        pipeline(pool, who.tenant_id),
    )
    tier_rows = []
    total = 0
    furthest: dict[str | None, int] = {}
    stage: dict[Any, int] = {}
    source: dict[Any, int] = {}
    campaign: dict[Any, int] = {}
    days: dict[Any, int] = {}
    for r in lead_rows:
        if r["by_furthest"]:
            furthest[r["furthest_stage"]] = r["leads"]
        elif r["by_stage"]:
            stage[r["stage"]] = r["leads"]
        elif r["by_source"]:
            source[r["source"]] = r["leads"]
        elif r["by_campaign"]:
            campaign[r["campaign"]] = r["leads"]
        elif r["by_day"]:
            days[r["day"]] = r["leads"]
        elif r["by_tier"]:
            tier_rows.append(r)
        else:
            total = r["leads"]
    assert delivery is not None
    attempts, succeeded = delivery["attempts"], delivery["succeeded"]
    latency = delivery["latency"] or [None, None, None]
    data = {
        "from": start,
        "to": end,
        "leads": total,
        "funnel": funnel(who.pipeline.stages, furthest, total),
        "stages": _ranked(stage, None),
        "top_sources": _ranked(source),
        "top_campaigns": _ranked(campaign),
        "new_leads_per_day": [
            {"date": day.isoformat(), "leads": n} for day, n in sorted(days.items())
        ],
        "deliveries": {
            "attempts": attempts,
            "succeeded": succeeded,
            "success_rate": round(succeeded / attempts, 4) if attempts else None,
            "latency_ms": dict(zip(("p50", "p95", "p99"), latency, strict=True)),
        },
        "score_tiers": tier_mix(who.scoring.tier_names if who.scoring else (), tier_rows),
        "pipeline": deals,
    }
    return json_response({"data": data})


OPERATIONS = [
    Operation("GET", "/v1/analytics", analytics, "Funnel, sources, daily leads, delivery health",
              scope="read", query=AnalyticsQuery, response=AnalyticsResponse, errors=(400,),
              tags=("analytics",)),
]  # fmt: skip
