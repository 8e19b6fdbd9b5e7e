"""The lead's request and response models.

These models validate every request body and query string of the leads API, and the OpenAPI
document is generated from them (`gateway.openapi`), so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from gateway.constants import MAX_TEXT_FIELD, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from gateway.deals.models import Deal
from gateway.deliveries.models import Delivery
from gateway.timeline.models import TimelineItem
from gateway.types import Moment

# Counts are stored as Postgres integers.
MAX_COUNT = 2**31 - 1

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_FIELD)]

# The lead's own columns that a postback or a PATCH may set, besides stage and custom_data.
TEXT_FIELDS = (
    "external_id", "email", "phone", "first_name", "last_name", "company", "source", "domain",
    "campaign", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "referrer", "ip_address", "user_agent", "browser", "device_type",
)  # fmt: skip
NUMBER_FIELDS = (
    "form_completion_percent", "form_fields_completed", "form_fields_total", "estimated_value",
)  # fmt: skip


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _empty_is_absent(data: Any) -> Any:
    """An empty or blank value means "not sent": HTML forms post every input, filled or not."""
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not _is_blank(v)}
    return data


class LeadFields(BaseModel):
    """The fields a lead carries; every one optional."""

    model_config = ConfigDict(
        coerce_numbers_to_str=True,  # ad networks send ids and phones as numbers
        allow_inf_nan=False,
        str_strip_whitespace=True,
    )

    external_id: Text | None = Field(None, description="The source system's id for the lead.")
    email: Text | None = Field(None, examples=["ada@example.com"])
    phone: Text | None = Field(
        None, description="Any common format; stored as E.164.", examples=["+14155550123"]
    )
    first_name: Text | None = None
    last_name: Text | None = None
    company: Text | None = None
    stage: Text | None = Field(None, description="A stage of the tenant's pipeline.")
    source: Text | None = None
    domain: Text | None = None
    campaign: Text | None = None
    utm_source: Text | None = None
    utm_medium: Text | None = None
    utm_campaign: Text | None = None
    utm_term: Text | None = None
    utm_content: Text | None = None
    referrer: Text | None = None
    ip_address: Text | None = None
    user_agent: Text | None = None
    browser: Text | None = None
    device_type: Text | None = None
    form_completion_percent: float | None = Field(None, ge=0, le=100)
    form_fields_completed: int | None = Field(None, ge=0, le=MAX_COUNT)
    form_fields_total: int | None = Field(None, ge=0, le=MAX_COUNT)
    estimated_value: float | None = Field(None, ge=0, le=1e15)
    custom_data: dict[str, Any] | None = Field(
        None, description="Merged key by key into the lead's custom data."
    )


class PostbackIn(LeadFields):
    """A postback or lead create. Fields not named here are kept in `custom_data`."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "first_name": "Ada",
                    "source": "landing-page",
                    "utm_campaign": "spring",
                    "form_completion_percent": 60,
                }
            ]
        },
    )

    lead_id: Text | None = Field(None, description="Leadgate's id of an existing lead.")
    force_stage: bool = Field(False, description="Allow moving the lead backward.")

    _drop_empty = model_validator(mode="before")(_empty_is_absent)


class LeadPatch(LeadFields):
    """A manual change: any stage may be set; `null` clears a field."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"stage": "qualified", "company": None,
                                         "custom_data": {"budget": "50k"}}]},
    )  # fmt: skip

    opted_out: bool | None = Field(
        None,
        description="true: the lead opted out, as an inbound opt-out marks it (its pending "
        "deliveries are cancelled); false: it opted in again.",
    )


class LeadFilters(BaseModel):
    """Which leads: `custom.<key>=<value>` also filters custom_data."""

    model_config = ConfigDict(extra="forbid")

    source: Text | None = None
    campaign: Text | None = None
    search: Text | None = Field(None, description="Matches name, email, phone or company.")
    from_: Moment | None = Field(None, alias="from", description="Created at or after.")
    to: Moment | None = Field(None, description="Created before.")
    updated_since: Moment | None = None
    score_tier: list[Text] | None = Field(
        None, description="Repeat to match any of several scoring tiers."
    )
    min_score: int | None = Field(None, ge=-MAX_COUNT, le=MAX_COUNT, description="Score at least.")


class LeadListQuery(LeadFilters):
    """Filters and pagination for `GET /v1/leads`; `custom.<key>=<value>` filters custom_data."""

    stage: list[Text] | None = Field(None, description="Repeat to match any of several stages.")
    limit: int = Field(PAGE_LIMIT_DEFAULT, ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(0, ge=0, le=1_000_000)
    cursor: Text | None = Field(None, description="`next_cursor` of the previous page.")
    total: bool = Field(
        True,
        description="false: do not count the matching leads (`total` is null), for a page that "
        "does not show it; counting reads every matching lead.",
    )


class StageChange(BaseModel):
    from_stage: str | None
    to_stage: str
    forced: bool
    at: datetime
    api_key_id: str | None


class Lead(BaseModel):
    """A lead as the API and every lead event show it."""

    id: str
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    stage: str
    source: str | None
    domain: str | None
    campaign: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None
    referrer: str | None
    ip_address: str | None
    user_agent: str | None
    browser: str | None
    device_type: str | None
    form_completion_percent: float | None
    form_fields_completed: int | None
    form_fields_total: int | None
    estimated_value: float | None
    custom_data: dict[str, Any]
    score: int | None = Field(
        description="The sum of the points of the scoring rules that hold; "
        "null when the account has no rules."
    )
    score_tier: str | None = Field(description="The highest tier whose `min` the score reaches.")
    score_breakdown: dict[str, int] | None = Field(
        description="The points of each rule that holds, by rule name."
    )
    opted_out_at: datetime | None = Field(
        description="When an inbound opt-out arrived; postbacks never clear it."
    )
    created_at: datetime
    updated_at: datetime


class LeadDetail(Lead):
    stage_history: list[StageChange]
    deliveries: list[Delivery] = Field(description="The lead's most recent webhook deliveries.")
    timeline: list[TimelineItem] = Field(description="The lead's 20 most recent items.")
    timeline_next_cursor: str | None = Field(
        description="For GET /v1/leads/{id}/events?cursor=…: the items before these."
    )
    deals: list[Deal] = Field(description="The lead's 20 newest deals.")


# What only a lead's detail carries, beside the lead as its events show it.
DETAIL_ONLY = frozenset(LeadDetail.model_fields) - frozenset(Lead.model_fields)


class IngestResponse(BaseModel):
    data: Lead
    created: bool
    stage_ignored: bool


class LeadResponse(BaseModel):
    data: LeadDetail


class LeadPage(BaseModel):
    data: list[Lead]
    total: int | None = Field(description="Every lead matching the filters; null if not asked.")
    limit: int
    offset: int
    next_cursor: str | None


class DeletedResponse(BaseModel):
    id: str
    deleted: Literal[True]


class StageCount(BaseModel):
    stage: str
    leads: int


class StageCounts(BaseModel):
    """Leads matching the filters in each stage: the pipeline's, its exit stages, then any
    stage since removed from the pipeline that leads are still in."""

    data: list[StageCount]
    total: int
