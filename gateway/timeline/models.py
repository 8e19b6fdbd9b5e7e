"""The timeline's response models. An item carries the fields of its kind only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.constants import PAGE_LIMIT_MAX
from gateway.deliveries.models import State

# How many items a lead's detail shows; `GET /v1/leads/{id}/events` pages through all.
RECENT = 20

Kind = Literal["message", "follow_up", "lead_change", "deal_change", "stage_change"]


class TimelineQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(RECENT, ge=1, le=PAGE_LIMIT_MAX)
    cursor: str | None = Field(
        None, max_length=1000, description="`next_cursor` of the page before."
    )
    total: bool = Field(True, description="false: do not count the lead's items.")


class ItemDelivery(BaseModel):
    id: str
    endpoint_id: str
    state: State
    attempt_count: int
    last_status: int | None
    next_attempt_at: datetime | None


class TimelineItem(BaseModel):
    """`message`: an inbound event (its `channel` and `text` read from the provider's body);
    `follow_up`: an event published for the lead; `lead_change` / `deal_change`: a lead.* or
    deal.* event; `stage_change`: a move in the lead's stage history. Items from the outbox (and
    a message's or a stage move's webhook) carry `event_id` and its `deliveries`."""

    kind: Kind
    at: datetime
    id: str | None = Field(None, description="The event's or inbound event's id.")
    type: str | None = None
    source: str | None = None
    channel: str | None = None
    text: str | None = None
    payload: Any = Field(None, description="A message: the provider's body as received.")
    data: Any = Field(None, description="An event: its data as sent.")
    deliver_at: datetime | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    forced: bool | None = None
    api_key_id: str | None = None
    event_id: str | None = None
    deliveries: list[ItemDelivery] | None = None


class TimelinePage(BaseModel):
    data: list[TimelineItem]
    total: int | None = Field(description="Every item of the lead; null if not asked.")
    limit: int
    next_cursor: str | None
