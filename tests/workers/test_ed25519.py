"""Ed25519 signatures, as receivers check them: the `cryptography` package's Ed25519 public key
on what a real receiver got, and Node's own `crypto.verify` as the receiver itself.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.crypto import Cipher
from tests.conftest import Tenant
from tests.receivers import Received, Receiver
from tests.workers.conftest import add_endpoint, post_lead
from tests.workers.helpers.processes import NodeVerifier
from tests.workers.helpers.records import attempts_of, settled
from tests.workers.test_signing import rotate, settled_lead_delivery

Client = TestClient[Any, Any]
ED25519 = {"scheme": "ed25519"}


@pytest.fixture
async def node_ed25519() -> AsyncIterator[Callable[[str], Awaitable[NodeVerifier]]]:
    started: list[NodeVerifier] = []

    async def start(public_key: str) -> NodeVerifier:
        verifier = await NodeVerifier.start("ed25519", public_key)
        started.append(verifier)
        return verifier

    yield start
    for verifier in started:
        verifier.stop()


def public_key(text: str) -> Ed25519PublicKey:
    assert text.startswith("whpk_")
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text[len("whpk_") :]))


def signatures(got: Received) -> list[bytes]:
    parts = got.headers["webhook-signature"].split(" ")
    assert all(p.startswith("v1a,") for p in parts), parts
    return [base64.b64decode(p[len("v1a,") :]) for p in parts]


def signed_content(got: Received) -> bytes:
    return f"{got.headers['webhook-id']}.{got.headers['webhook-timestamp']}.".encode() + got.body


async def test_create_returns_the_public_key_and_keeps_the_private_key_encrypted(
    client: Client, tenant: Tenant, receiver: Receiver, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, signature=ED25519)

    assert "secret" not in endpoint
    assert len(base64.b64decode(endpoint["public_key"][len("whpk_") :])) == 32
    shown = await client.get(f"/v1/endpoints/{endpoint['id']}", headers=tenant.headers)
    assert (await shown.json())["data"]["public_key"] == endpoint["public_key"]
    stored = await conn.fetchval("SELECT secret FROM endpoints")
    assert stored.startswith("enc1:")
    assert cipher.decrypt_text(stored).startswith("whsk_")


async def test_a_delivery_carries_a_v1a_signature_the_public_key_verifies(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, signature=ED25519)
    await post_lead(client, tenant, email="ed@example.com")

    (got,) = await receiver.wait_for(1)

    (signature,) = signatures(got)
    public_key(endpoint["public_key"]).verify(signature, signed_content(got))
    with pytest.raises(InvalidSignature):
        public_key(endpoint["public_key"]).verify(signature, signed_content(got) + b" ")
    assert got.headers["webhook-id"] == got.json()["id"]


async def test_node_crypto_verify_accepts_the_delivery(
    client: Client,
    tenant: Tenant,
    node_ed25519: Callable[[str], Awaitable[NodeVerifier]],
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    # The endpoint is made first (its key is needed to start the verifier), then pointed at it.
    endpoint = await add_endpoint(client, tenant, "http://127.0.0.1:9/x", signature=ED25519)
    verifier = await node_ed25519(endpoint["public_key"])
    moved = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"url": verifier.url}, headers=tenant.headers
    )
    assert moved.status == 200
    await post_lead(client, tenant, email="node@example.com", first_name="Zoë")

    row = await settled_lead_delivery(conn)

    assert row["state"] == "succeeded"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["response_body"]) for a in attempts] == [(200, "verified")]


async def test_during_the_grace_both_keys_sign_and_each_public_key_verifies_its_own(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    worker: None,
    node_ed25519: Callable[[str], Awaitable[NodeVerifier]],
    conn: asyncpg.Connection,
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, signature=ED25519)
    rotated = await rotate(client, tenant, endpoint["id"])
    assert set(rotated) == {"public_key", "previous_secret_expires_at"}
    assert rotated["public_key"] != endpoint["public_key"]

    await post_lead(client, tenant, email="rotating@example.com")
    (got,) = await receiver.wait_for(1)

    new, old = signatures(got)
    public_key(rotated["public_key"]).verify(new, signed_content(got))
    public_key(endpoint["public_key"]).verify(old, signed_content(got))
    # A receiver still holding the old public key goes on verifying through the grace.
    verifier = await node_ed25519(endpoint["public_key"])
    await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"url": verifier.url}, headers=tenant.headers
    )
    await post_lead(client, tenant, email="second@example.com")
    second = await conn.fetchval(
        "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE e.body LIKE '%second@example.com%'"
    )
    row = await settled(conn, second)
    assert row["state"] == "succeeded"


async def test_an_ed25519_endpoint_refuses_a_given_secret_naming_secret(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/endpoints",
        json={"url": "http://127.0.0.1:9/x", "signature": ED25519, "secret": "whsec_abc"},
        headers=tenant.headers,
    )

    body = await response.json()
    assert response.status == 400, body
    assert list(body["error"]["fields"]) == ["secret"]


async def test_switching_an_endpoint_to_ed25519_makes_a_key_pair_and_drops_the_hmac_secret(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await rotate(client, tenant, endpoint["id"])

    patched = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"signature": ED25519}, headers=tenant.headers
    )

    data = (await patched.json())["data"]
    assert patched.status == 200 and data["signature"] == ED25519
    await post_lead(client, tenant, email="switched@example.com")
    (got,) = await receiver.wait_for(1)
    (signature,) = signatures(got)
    public_key(data["public_key"]).verify(signature, signed_content(got))
