"""Endpoint request and response models (they validate requests and generate the OpenAPI)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from gateway.dialects.templates import check_template
from gateway.signing import Signature

# Event types are dotted lowercase words; a pattern is a type, `prefix.*`, or `*`.
EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
# Headers Leadgate sets itself; an endpoint's extra headers may not replace them.
RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "webhook-id", "webhook-timestamp",
     "webhook-signature", "user-agent", "transfer-encoding", "connection"}
)  # fmt: skip
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

Url = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
TEMPLATE_DESCRIPTION = (
    "A JSONata expression from the event ({id, type, timestamp, data}) to the webhook body; "
    "compiled on save. Null sends the event itself."
)


def _check_patterns(patterns: list[str]) -> list[str]:
    for p in patterns:
        core = p[:-2] if p.endswith(".*") else p
        if p != "*" and not EVENT_TYPE.match(core):
            raise ValueError(f"{p!r} is not an event type, `prefix.*` or `*`")
    return patterns


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not HEADER_NAME.match(name) or name.lower() in RESERVED_HEADERS:
            raise ValueError(f"{name!r} cannot be set as an extra header")
        if "\r" in value or "\n" in value or len(value) > 4000:
            raise ValueError(f"the value of {name!r} is not a valid header value")
    if len(headers) > 20:
        raise ValueError("at most 20 extra headers")
    return headers


class EndpointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    event_types: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        max_length=50,
        description="Exact types, `lead.*`, or `*`.",
        examples=[["lead.*"]],
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every webhook.")
    rate_limit: int | None = Field(None, ge=1, le=10_000, description="Requests per second.")
    enabled: bool = True
    ordered: bool = Field(
        False,
        description="Deliver each lead's events one at a time, in order, each after the "
        "previous one ended (succeeded, failed or cancelled).",
    )
    signature: Signature = Field(default_factory=Signature)
    template: str | None = Field(
        None, description=TEMPLATE_DESCRIPTION, examples=['{"event": type, "lead": data}']
    )

    _patterns = field_validator("event_types")(_check_patterns)
    _headers = field_validator("headers")(_check_headers)
    _template = field_validator("template")(lambda v: v if v is None else check_template(v))


class EndpointIn(EndpointFields):
    """A new endpoint; without `secret`, a `whsec_…` secret is generated."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"url": "https://crm.example.com/hooks/leadgate"}]}
    )

    url: Url
    secret: Annotated[str, StringConstraints(min_length=8, max_length=500)] | None = None


class EndpointPatch(BaseModel):
    """Change an endpoint; enabling it again clears its failure record."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"enabled": True}, {"event_types": ["lead.created"]}]},
    )

    url: Url | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    event_types: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] | None = (
        Field(None, min_length=1, max_length=50)
    )
    headers: dict[str, str] | None = None
    rate_limit: int | None = Field(None, ge=1, le=10_000)
    enabled: bool | None = None
    ordered: bool | None = None
    signature: Signature | None = None
    secret: Annotated[str, StringConstraints(min_length=8, max_length=500)] | None = Field(
        None, description="Replace the secret at once; rotate-secret keeps the old one a while."
    )

    template: str | None = Field(None, description=TEMPLATE_DESCRIPTION)

    _patterns = field_validator("event_types")(lambda v: v if v is None else _check_patterns(v))
    _headers = field_validator("headers")(lambda v: v if v is None else _check_headers(v))
    _template = field_validator("template")(lambda v: v if v is None else check_template(v))


class RotateSecret(BaseModel):
    """A new signing secret (generated unless given); the old one signs too for the grace."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"grace_seconds": 3600}]}
    )

    secret: Annotated[str, StringConstraints(min_length=8, max_length=500)] | None = None
    grace_seconds: int = Field(86_400, ge=0, le=7 * 86_400)


class EndpointHealth(BaseModel):
    consecutive_failures: int
    circuit_open_until: datetime | None
    failing_since: datetime | None


class Endpoint(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    headers: dict[str, str]
    rate_limit: int | None
    enabled: bool
    ordered: bool
    disabled_reason: str | None
    signature: dict[str, Any]
    template: str | None
    health: EndpointHealth
    created_at: datetime
    updated_at: datetime
    public_key: str | None = Field(
        None, description="ed25519 only: `whpk_…`, what receivers verify signatures with."
    )


class EndpointWithSecret(Endpoint):
    secret: str | None = Field(None, description="The signing secret (not for ed25519).")


class EndpointResponse(BaseModel):
    data: Endpoint


class EndpointCreatedResponse(BaseModel):
    data: EndpointWithSecret


class EndpointList(BaseModel):
    data: list[Endpoint]


class SecretResponse(BaseModel):
    secret: str | None = Field(None, description="The new signing secret (not for ed25519).")
    public_key: str | None = Field(None, description="ed25519 only: the new public key.")
    previous_secret_expires_at: datetime | None


class TestSent(BaseModel):
    event_id: str
    delivery_id: str | None
