"""Deliveries, attempts, replays and published events: request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from gateway.constants import PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from gateway.types import Moment, ZonedMoment

State = Literal["pending", "succeeded", "failed", "cancelled"]
Id = Annotated[str, StringConstraints(max_length=200)]


class DeliveryQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: Id | None = None
    lead_id: Id | None = None
    event_type: Id | None = None
    state: State | None = None
    limit: int = Field(PAGE_LIMIT_DEFAULT, ge=1, le=PAGE_LIMIT_MAX)
    offset: int = Field(0, ge=0, le=1_000_000)


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    status: int | None
    latency_ms: float
    outcome: str
    error: str | None
    response_body: str | None


class Delivery(BaseModel):
    id: str
    event_id: str
    endpoint_id: str
    lead_id: str | None
    event_type: str
    state: State
    attempt_count: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryDetail(Delivery):
    attempts: list[Attempt]


class DeliveryPage(BaseModel):
    data: list[Delivery]
    total: int
    limit: int
    offset: int


class DeliveryResponse(BaseModel):
    data: DeliveryDetail


class Replay(BaseModel):
    """Send again an endpoint's deliveries created since a time, in the given states."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"since": "2026-11-20T00:00:00Z", "state": "failed"}]},
    )

    since: Moment
    state: State | list[State] = Field("failed", description="One state or several.")


class Replayed(BaseModel):
    replayed: int


class Cancelled(BaseModel):
    cancelled: int


class PublishEvent(BaseModel):
    """A custom event; `deliver_at` or `delay` makes it a scheduled follow-up."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "followup.day3", "lead_id": "lead_…", "data": {}, "delay": 60}]
        },
    )

    type: Annotated[
        str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=100)
    ] = Field(description="Dotted, lowercase; `lead.`, `deal.` and `endpoint.` are Leadgate's own.")
    lead_id: Id | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    deliver_at: ZonedMoment | None = None
    delay: float | None = Field(None, ge=0, le=366 * 86_400, description="Seconds from now.")

    @field_validator("type")
    @classmethod
    def _not_ours(cls, value: str) -> str:
        if value.split(".")[0] in ("lead", "deal", "endpoint"):
            raise ValueError("lead.*, deal.* and endpoint.* events are Leadgate's own")
        return value

    @field_validator("delay")
    @classmethod
    def _one_schedule(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("deliver_at") is not None:
            raise ValueError("give deliver_at or delay, not both")
        return value


class Published(BaseModel):
    id: str
    type: str
    lead_id: str | None
    deliver_at: datetime | None
    deliveries: int


class PublishedResponse(BaseModel):
    data: Published
