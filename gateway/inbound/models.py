"""Inbound sources and events: request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from gateway.signing import Signature


class SourceIn(BaseModel):
    """A provider that posts events; without `secret`, a `whsec_…` secret is generated."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "sms-provider"}]}
    )

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")] = Field(
        description="Lowercase letters, digits, - and _; the path of /v1/inbound/{name}."
    )
    secret: Annotated[str, StringConstraints(min_length=8, max_length=500)] | None = None
    signature: Signature = Field(default_factory=Signature)
    tolerance_seconds: int = Field(300, ge=1, le=86_400)


class Source(BaseModel):
    name: str
    signature: dict[str, object]
    tolerance_seconds: int
    created_at: datetime


class SourceWithSecret(Source):
    secret: str


class SourceCreatedResponse(BaseModel):
    data: SourceWithSecret


class SourceResponse(BaseModel):
    data: Source


class SourceList(BaseModel):
    data: list[Source]


class InboundEvent(BaseModel):
    """What a provider posts: an id (or the webhook-id header), a type, and who it is about."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {"id": "msg_123", "type": "customer.reply", "email": "ada@example.com",
                 "channel": "whatsapp", "body": "Thanks!"}
            ]
        },
    )  # fmt: skip

    id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    type: (
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=100)]
        | None
    ) = Field(None, description="e.g. customer.reply, customer.opt_out")
    event: str | None = Field(None, description="Accepted in place of `type`.")
    lead_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    email: Annotated[str, StringConstraints(max_length=1000)] | None = None
    phone: Annotated[str, StringConstraints(max_length=100)] | None = None


class InboundAccepted(BaseModel):
    id: str
    type: str
    lead_id: str | None
    duplicate: bool


class InboundResponse(BaseModel):
    data: InboundAccepted
