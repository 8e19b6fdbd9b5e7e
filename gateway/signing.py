"""Webhook signatures: Standard Webhooks by default, or a plain HMAC-SHA256 hex header.

Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed
with the base64-decoded part of `whsec_…`; during a secret rotation one `v1,…` per secret,
space-separated. `hmac-sha256-hex`: the hex HMAC-SHA256 of the raw body, keyed with the secret's
UTF-8 bytes, in a named header after a prefix; during a rotation the previous secret's signature
goes in `<header>-Previous`, since such receivers compare one value. `ed25519`: Standard
Webhooks' asymmetric form, `webhook-signature: v1a,<base64 Ed25519 signature of
"id.timestamp.body">`, one per key during a rotation; the receiver verifies with the public key
`whpk_<base64 raw key>`, and the private key (`whsk_…`) never leaves Leadgate. `webhook-id`
and `webhook-timestamp` are sent with every scheme.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, model_validator

SECRET_PREFIX = "whsec_"
# Standard Webhooks allows 24 to 64 bytes of key; 32 matches the HMAC-SHA256 block economy.
SECRET_BYTES = 32
# Standard Webhooks' prefixes for an asymmetric key pair: the secret key and the public key.
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
ED25519_KEY_BYTES = 32


class Signature(BaseModel):
    """How an endpoint's webhooks are signed."""

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["standard", "hmac-sha256-hex", "ed25519"] = Field(
        "standard",
        description="standard (HMAC, v1), hmac-sha256-hex, or ed25519 (v1a; a key pair is made "
        "and the public key returned as whpk_…).",
    )
    header: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9-]+$",
        description="hmac-sha256-hex only: the header carrying the signature.",
    )
    prefix: str = Field("", max_length=50, description="hmac-sha256-hex only, e.g. `sha256=`.")

    def stored(self) -> dict[str, Any]:
        """As kept on the endpoint: the scheme, and only the options that apply to it."""
        return {"scheme": self.scheme, **self.model_dump(exclude_defaults=True)}

    @model_validator(mode="after")
    def _header_for_hex(self) -> Signature:
        if self.scheme == "hmac-sha256-hex" and not self.header:
            raise ValueError("the hmac-sha256-hex scheme needs a `header`, e.g. X-Signature")
        if self.scheme != "hmac-sha256-hex" and (self.header or self.prefix):
            raise ValueError("`header` and `prefix` apply only to the hmac-sha256-hex scheme")
        return self


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def standard_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; ValueError if it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as e:
        raise ValueError("the part after whsec_ must be base64") from e
    if not 24 <= len(key) <= 64:
        raise ValueError("the key must be 24 to 64 bytes")
    return key


def generate_signing_key() -> str:
    """A new Ed25519 private key, `whsk_<base64 of its 32 raw bytes>`."""
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return PRIVATE_KEY_PREFIX + base64.b64encode(raw).decode()


def _raw_key(text: str, prefix: str) -> bytes:
    if not text.startswith(prefix):
        raise ValueError(f"must start with {prefix}")
    try:
        raw = base64.b64decode(text[len(prefix) :], validate=True)
    except binascii.Error as e:
        raise ValueError(f"the part after {prefix} must be base64") from e
    if len(raw) != ED25519_KEY_BYTES:
        raise ValueError(f"an Ed25519 key is {ED25519_KEY_BYTES} bytes")
    return raw


def private_key(secret: str) -> Ed25519PrivateKey:
    """The Ed25519 key of a `whsk_…` secret; ValueError if it is not one."""
    return Ed25519PrivateKey.from_private_bytes(_raw_key(secret, PRIVATE_KEY_PREFIX))


def public_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 key of a `whpk_…` public key; ValueError if it is not one."""
    return Ed25519PublicKey.from_public_bytes(_raw_key(text, PUBLIC_KEY_PREFIX))


def public_key_of(secret: str) -> str:
    """`whpk_…`: what a receiver verifies `secret`'s signatures with."""
    raw = private_key(secret).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def check_secret(secret: str, signature: Signature) -> None:
    """Raise ValueError if `secret` cannot sign under `signature`."""
    if signature.scheme == "standard":
        standard_key(secret)
    elif signature.scheme == "ed25519":
        private_key(secret)
    elif not 8 <= len(secret) <= 500:
        raise ValueError("must be 8 to 500 characters")


def sign_headers(
    signature: Signature | dict[str, Any],
    secrets_: list[str],
    message_id: str,
    timestamp: int,
    body: bytes,
) -> dict[str, str]:
    """The headers that sign `body`; `secrets_` is the current secret, then any still in grace."""
    if isinstance(signature, dict):
        signature = Signature.model_validate(signature)
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if signature.scheme == "standard":
        signed = f"{message_id}.{timestamp}.".encode() + body
        parts = [
            "v1," + base64.b64encode(hmac.digest(standard_key(s), signed, hashlib.sha256)).decode()
            for s in secrets_
        ]
        headers["webhook-signature"] = " ".join(parts)
    elif signature.scheme == "ed25519":
        signed = f"{message_id}.{timestamp}.".encode() + body
        parts = ["v1a," + base64.b64encode(private_key(s).sign(signed)).decode() for s in secrets_]
        headers["webhook-signature"] = " ".join(parts)
    else:
        assert signature.header is not None
        digests = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets_]
        headers[signature.header] = signature.prefix + digests[0]
        if len(digests) > 1:
            headers[f"{signature.header}-Previous"] = signature.prefix + digests[1]
    return headers


def check_verify_key(secret: str, signature: Signature) -> None:
    """Raise ValueError if `secret` cannot verify under `signature` (an inbound source's key):
    for ed25519 it is the provider's public key, `whpk_…`."""
    if signature.scheme == "ed25519":
        public_key(secret)
    else:
        check_secret(secret, signature)


class BadSignature(ValueError):
    """An inbound request's signature is missing, wrong or stale; the message says which."""


def verify(
    signature: Signature | dict[str, Any],
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float,
    now: float,
) -> None:
    """Check an inbound request's signature, as a receiver of our own webhooks would.

    Standard Webhooks needs `webhook-id`, a `webhook-timestamp` within `tolerance` seconds of
    `now`, and a matching `v1,` signature among those given; `ed25519` the same with a `v1a,`
    signature that `secret` (a `whpk_…` public key) verifies. `hmac-sha256-hex` needs the named
    header; a `webhook-timestamp`, when sent, must be within tolerance too.
    """
    if isinstance(signature, dict):
        signature = Signature.model_validate(signature)
    stamp = headers.get("webhook-timestamp")
    if stamp is not None or signature.scheme != "hmac-sha256-hex":
        try:
            timestamp = int(stamp or "")
        except ValueError as e:
            raise BadSignature("missing or malformed webhook-timestamp") from e
        if abs(now - timestamp) > tolerance:
            raise BadSignature("webhook-timestamp is outside the tolerance")
    if signature.scheme != "hmac-sha256-hex":
        message_id = headers.get("webhook-id")
        if not message_id:
            raise BadSignature("missing webhook-id")
        if signature.scheme == "ed25519":
            signed = f"{message_id}.{timestamp}.".encode() + body
            _verify_ed25519(secret, headers.get("webhook-signature", ""), signed)
            return
        expected = sign_headers(signature, [secret], message_id, timestamp, body)
        wanted = expected["webhook-signature"]
        given = headers.get("webhook-signature", "").split()
        if not any(hmac.compare_digest(wanted, g) for g in given):
            raise BadSignature("no matching v1 signature")
        return
    assert signature.header is not None
    given_hex = headers.get(signature.header, "")
    wanted_hex = signature.prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(wanted_hex.encode(), given_hex.encode()):
        raise BadSignature(f"{signature.header} does not match")


def _verify_ed25519(key: str, header: str, signed: bytes) -> None:
    verifier = public_key(key)
    for given in header.split():
        version, _, encoded = given.partition(",")
        if version != "v1a":
            continue
        try:
            verifier.verify(base64.b64decode(encoded, validate=True), signed)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        return
    raise BadSignature("no matching v1a signature")
