"""Registering an endpoint: shared by the API and `leadgate endpoints add`."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.constants import ENDPOINT_PREFIX
from gateway.db import Conn
from gateway.endpoints import sql
from gateway.endpoints.models import EndpointIn
from gateway.ids import new_id
from gateway.signing import Signature, check_secret, generate_secret
from gateway.ssrf import DestinationRefused, check_destination


class EndpointRefused(ValueError):
    """The endpoint cannot be registered; `field` names what is at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def endpoint_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "description": row["description"],
        "event_types": list(row["event_types"]),
        "headers": row["headers"],
        "rate_limit": row["rate_limit"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "signature": row["signature"],
        "template": row["template"],
        "health": {
            "consecutive_failures": row["consecutive_failures"],
            "circuit_open_until": row["circuit_open_until"],
            "failing_since": row["failing_since"],
        },
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def parse_spec(fields: dict[str, Any]) -> EndpointIn:
    try:
        return EndpointIn.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise EndpointRefused(".".join(map(str, first["loc"])) or "endpoint", first["msg"]) from e


async def check_url(url: str, *, allow_private: bool) -> None:
    try:
        await check_destination(url, allow_private=allow_private)
    except DestinationRefused as e:
        raise EndpointRefused("url", str(e)) from e


def check_signing(secret: str, signature: Signature) -> None:
    try:
        check_secret(secret, signature)
    except ValueError as e:
        raise EndpointRefused("secret", str(e)) from e


async def add_endpoint(
    conn: Conn, tenant_id: str, spec: EndpointIn, *, allow_private: bool
) -> dict[str, Any]:
    """Check the URL against SSRF rules and the secret against the scheme, then register."""
    await check_url(spec.url, allow_private=allow_private)
    secret = spec.secret or generate_secret()
    check_signing(secret, spec.signature)
    row = await conn.fetchrow(
        sql.CREATE_ENDPOINT,
        new_id(ENDPOINT_PREFIX),
        tenant_id,
        spec.url,
        spec.description,
        spec.event_types,
        spec.headers,
        spec.rate_limit,
        spec.enabled,
        spec.signature.stored(),
        secret,
        spec.template,
    )
    return {**endpoint_json(row), "secret": secret}
