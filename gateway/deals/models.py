"""Deals: request and response models (the OpenAPI document is generated from them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from gateway.constants import MAX_TEXT_FIELD, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from gateway.deals.currencies import currency_code

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_FIELD)]
Title = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_FIELD)
]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Exact, as Postgres stores it (numeric(15, 4)): 15 digits at most, so every value is also a
# JavaScript number that prints back as given.
Money = Annotated[Decimal, Field(ge=0, max_digits=15, decimal_places=4)]
Currency = Annotated[
    str,
    StringConstraints(min_length=3, max_length=3),
    AfterValidator(currency_code),
]
Probability = Annotated[int, Field(ge=0, le=100, description="Percent, 0–100.")]


class DealFields(BaseModel):
    """What a deal carries; every field optional here."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    title: Title | None = None
    value: Money | None = Field(None, description="An amount ≥ 0, up to 4 decimal places.")
    currency: Currency | None = Field(
        None, description="ISO 4217; the tenant's default currency when not given."
    )
    stage: Text | None = Field(None, description="Any text, e.g. negotiation.")
    probability: Probability | None = None
    lead_id: Id | None = Field(None, description="A lead of the same tenant.")
    custom_data: dict[str, Any] | None = Field(
        None, description="Merged key by key; a key set to null is removed."
    )


class DealIn(DealFields):
    """A new deal: a title is required."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"title": "Enterprise Deal", "value": 50000, "currency": "EUR",
                 "stage": "negotiation", "probability": 75, "lead_id": "lead_…"}
            ]
        },
    )  # fmt: skip

    title: Title


class DealPatch(DealFields):
    """A change: `null` clears a field (`title` and `currency` cannot be cleared)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"stage": "won", "probability": 100}]},
    )


class DealListQuery(BaseModel):
    """Filters and pagination for `GET /v1/deals`, newest first."""

    model_config = ConfigDict(extra="forbid")

    stage: list[Text] | None = Field(None, description="Repeat to match any of several stages.")
    min_value: Money | None = Field(None, description="Value at least this.")
    max_value: Money | None = Field(None, description="Value at most this.")
    lead_id: Id | None = None
    limit: int = Field(PAGE_LIMIT_DEFAULT, ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(0, ge=0, le=1_000_000)
    cursor: Text | None = Field(None, description="`next_cursor` of the previous page.")
    total: bool = Field(True, description="false: do not count the matching deals.")


class Deal(BaseModel):
    """A deal as the API and every deal event show it."""

    id: str
    title: str
    value: float | None
    currency: str
    stage: str | None
    probability: int | None
    lead_id: str | None
    custom_data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DealResponse(BaseModel):
    data: Deal


class DealPage(BaseModel):
    data: list[Deal]
    total: int | None = Field(description="Every deal matching the filters; null if not asked.")
    limit: int
    offset: int
    next_cursor: str | None


class DealDeleted(BaseModel):
    id: str
    deleted: Literal[True]


class StagePipeline(BaseModel):
    stage: str | None
    deals: int
    value: float
    weighted_value: float = Field(description="Σ value × probability / 100.")


class CurrencyPipeline(BaseModel):
    """The deals in one currency, and by stage; values are never added across currencies."""

    currency: str
    deals: int
    value: float
    weighted_value: float
    stages: list[StagePipeline]
