"""Registering an endpoint: shared by the API and `leadgate endpoints add`."""

from __future__ import annotations

from typing import Any

from aiohttp.abc import AbstractResolver
from pydantic import ValidationError

from gateway.constants import ENDPOINT_PREFIX
from gateway.crypto import Cipher
from gateway.db import Conn
from gateway.endpoints import sql
from gateway.endpoints.models import EndpointIn
from gateway.ids import new_id
from gateway.signing import (
    Signature,
    check_secret,
    generate_secret,
    generate_signing_key,
    public_key_of,
)
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
        "ordered": row["ordered"],
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
        "public_key": row["public_key"],
    }


def parse_spec(fields: dict[str, Any]) -> EndpointIn:
    try:
        return EndpointIn.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        raise EndpointRefused(".".join(map(str, first["loc"])) or "endpoint", first["msg"]) from e


async def check_url(
    url: str, *, allow_private: bool, resolver: AbstractResolver | None = None
) -> None:
    try:
        await check_destination(url, allow_private=allow_private, resolver=resolver)
    except DestinationRefused as e:
        raise EndpointRefused("url", str(e)) from e


def check_signing(secret: str, signature: Signature) -> None:
    try:
        check_secret(secret, signature)
    except ValueError as e:
        raise EndpointRefused("secret", str(e)) from e


def new_signing(
    given: str | None, signature: Signature, generated: str | None = None
) -> tuple[str, str | None]:
    """The secret a new or rotated endpoint signs with, and its public key (ed25519 only).

    An ed25519 key pair is always made here: the private key never leaves Leadgate.
    """
    if signature.scheme == "ed25519":
        if given is not None:
            raise EndpointRefused(
                "secret", "an ed25519 key pair is made by Leadgate; leave `secret` out"
            )
        key = generate_signing_key()
        return key, public_key_of(key)
    secret = given or generated or generate_secret()
    check_signing(secret, signature)
    return secret, None


def changed_signing(
    current: Any, signature: Signature, given: str | None, cipher: Cipher
) -> tuple[str | None, str | None]:
    """For a PATCH: the new encrypted secret (None: keep it) and the public key to keep."""
    if signature.scheme == "ed25519" and current["signature"]["scheme"] == "ed25519":
        if given is not None:
            raise EndpointRefused("secret", "an ed25519 key is replaced with rotate-secret")
        return None, current["public_key"]
    if signature.scheme == "ed25519":
        key, public = new_signing(given, signature)
        return cipher.encrypt(key), public
    check_signing(given or cipher.decrypt_text(current["secret"]), signature)
    return (cipher.encrypt(given) if given else None), None


def shown_key(secret: str, public_key: str | None) -> dict[str, str]:
    """What a create or rotation answers: the secret, or for ed25519 only the public key."""
    return {"public_key": public_key} if public_key else {"secret": secret}


async def add_endpoint(
    conn: Conn,
    tenant_id: str,
    spec: EndpointIn,
    *,
    allow_private: bool,
    cipher: Cipher,
    resolver: AbstractResolver | None = None,
) -> dict[str, Any]:
    """Check the URL against SSRF rules (resolving through `resolver`, or the system's) and
    the secret against the scheme, then register."""
    await check_url(spec.url, allow_private=allow_private, resolver=resolver)
    return await insert_endpoint(conn, tenant_id, spec, cipher)


async def insert_endpoint(
    conn: Conn, tenant_id: str, spec: EndpointIn, cipher: Cipher
) -> dict[str, Any]:
    """Register an endpoint whose URL has been checked; its secret (or public key) is
    returned here and never again."""
    secret, public = new_signing(spec.secret, spec.signature)
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
        cipher.encrypt(secret),
        public,
        spec.ordered,
        spec.template,
    )
    return {**endpoint_json(row), **shown_key(secret, public)}
