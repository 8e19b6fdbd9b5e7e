"""`GET /v1/stats`: the account's figures, read from its counters (never by counting leads).

`tenant_monthly_counts` holds, per tenant and UTC month, the leads created and the leads that
reached a converted stage for the first time, written in the same transaction as the change
they count (the batch's WRITE_LEADS, a PATCH's UPDATE_LEAD). So the figures cost a read of a few
rows per month, whatever the number of leads, and they agree with what was committed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from aiohttp import web
from pydantic import BaseModel, Field

from gateway.appkeys import POOL, PRINCIPAL
from gateway.http import json_response
from gateway.middleware import requires
from gateway.openapi import Operation

STATS = """
SELECT coalesce(sum(created), 0)::bigint AS received,
       coalesce(sum(converted), 0)::bigint AS converted,
       coalesce(sum(created) FILTER (WHERE month = $2), 0)::bigint AS this_month
FROM tenant_monthly_counts WHERE tenant_id = $1
"""


class Stats(BaseModel):
    leads_received: int = Field(description="Leads created, all time (erased ones included).")
    leads_converted: int = Field(
        description="Leads that reached one of `converted_stages`, each counted once."
    )
    conversion_rate: float = Field(ge=0, le=1, description="leads_converted / leads_received.")
    leads_this_month: int = Field(description="Leads created this month (UTC).")
    month: str = Field(description="This month, UTC: `YYYY-MM`.", examples=["2026-05"])
    quota_this_month: int | None = Field(description="New leads allowed a month; null: no quota.")
    quota_remaining: int | None = Field(description="New leads still allowed this month.")
    converted_stages: list[str] = Field(description="The stages that count as a conversion.")


class StatsResponse(BaseModel):
    data: Stats


def month_of(moment: datetime) -> date:
    """The month a moment counts in: its first day, in UTC."""
    return moment.astimezone(UTC).date().replace(day=1)


@requires("read")
async def stats(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    month = month_of(datetime.now(UTC))
    row = await request.app[POOL].fetchrow(STATS, who.tenant_id, month)
    assert row is not None
    received, converted = row["received"], row["converted"]
    quota = who.monthly_quota
    data = {
        "leads_received": received,
        "leads_converted": converted,
        "conversion_rate": round(min(converted / received, 1.0), 4) if received else 0.0,
        "leads_this_month": row["this_month"],
        "month": month.strftime("%Y-%m"),
        "quota_this_month": quota,
        "quota_remaining": max(quota - row["this_month"], 0) if quota is not None else None,
        "converted_stages": list(who.converted_stages or who.pipeline.stages[-1:]),
    }
    return json_response({"data": data})


OPERATIONS = [
    Operation("GET", "/v1/stats", stats, "Account statistics and this month's quota",
              scope="read", response=StatsResponse, tags=("analytics",)),
]  # fmt: skip
