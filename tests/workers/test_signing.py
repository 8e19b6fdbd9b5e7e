"""Signing as receivers check it: Standard Webhooks by the `standardwebhooks` package, and the
plain hex HMAC by an independent `hmac` call and by the lead systems' own Node verifiers.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.settings import Settings
from tests.conftest import Tenant
from tests.receivers import Receiver
from tests.workers.conftest import (
    ReceiverFactory,
    WorkerFactory,
    add_endpoint,
    delivery_of,
    post_lead,
)
from tests.workers.helpers.processes import NodeVerifier
from tests.workers.helpers.records import attempts_of, settled

Client = TestClient[Any, Any]
StartVerifier = Callable[[str, str], Awaitable[NodeVerifier]]

SHARED_SECRET = "any-shared-secret"
SHORTSTACK = {"scheme": "hmac-sha256-hex", "header": "X-ShortStack-Signature", "prefix": "sha256="}
LEADITIO = {"scheme": "hmac-sha256-hex", "header": "X-Leaditio-Signature"}


@pytest.fixture
async def node_verifier() -> AsyncIterator[StartVerifier]:
    """Start the seeds' Node verifiers as receivers; each is stopped at the test's end."""
    started: list[NodeVerifier] = []

    async def start(scheme: str, secret: str) -> NodeVerifier:
        verifier = await NodeVerifier.start(scheme, secret)
        started.append(verifier)
        return verifier

    yield start
    for verifier in started:
        verifier.stop()


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def rotate(client: Client, tenant: Tenant, endpoint_id: str, **fields: Any) -> Any:
    response = await client.post(
        f"/v1/endpoints/{endpoint_id}/rotate-secret", json=fields, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 200, body
    return body


async def settled_lead_delivery(conn: asyncpg.Connection) -> Any:
    row = await delivery_of(conn)
    assert row is not None
    return await settled(conn, row["id"])


async def test_webhook_id_is_kept_across_retries_and_the_timestamp_is_fresh_per_attempt(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    settings: Settings,
) -> None:
    await run_worker(settings.model_copy(update={"retry_schedule": (0.0, 1.5)}))
    receiver = await receiver_factory(statuses=[500, 200])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="retried@example.com")

    first, second = await receiver.wait_for(2)

    payload = Webhook(endpoint["secret"]).verify(first.body, first.headers)
    Webhook(endpoint["secret"]).verify(second.body, second.headers)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == payload["id"]
    assert first.body == second.body
    assert int(second.headers["webhook-timestamp"]) >= int(first.headers["webhook-timestamp"]) + 1


async def test_during_the_grace_period_both_the_old_and_the_new_secret_verify(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url)
    rotated = await rotate(client, tenant, endpoint["id"])
    assert rotated["secret"] != endpoint["secret"]
    assert rotated["secret"].startswith("whsec_")
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)

    await post_lead(client, tenant, email="rotating@example.com")
    (got,) = await receiver.wait_for(1)

    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    Webhook(rotated["secret"]).verify(got.body, got.headers)
    Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_without_grace_only_the_new_secret_verifies(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url)
    rotated = await rotate(client, tenant, endpoint["id"], grace_seconds=0)

    await post_lead(client, tenant, email="rotated@example.com")
    (got,) = await receiver.wait_for(1)

    assert got.headers["webhook-signature"].count("v1,") == 1
    Webhook(rotated["secret"]).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_hex_scheme_sends_the_hmac_of_the_raw_body_after_the_prefix(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    await add_endpoint(client, tenant, receiver.url, signature=SHORTSTACK, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="hex@example.com")

    (got,) = await receiver.wait_for(1)

    assert got.headers["X-ShortStack-Signature"] == "sha256=" + hex_hmac(SHARED_SECRET, got.body)


async def test_hex_scheme_with_an_empty_prefix_sends_the_bare_hex(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    await add_endpoint(client, tenant, receiver.url, signature=LEADITIO, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="bare@example.com")

    (got,) = await receiver.wait_for(1)

    assert got.headers["X-Leaditio-Signature"] == hex_hmac(SHARED_SECRET, got.body)


async def test_hex_scheme_also_sends_webhook_id_and_timestamp(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    await add_endpoint(client, tenant, receiver.url, signature=SHORTSTACK, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="ids@example.com")

    (got,) = await receiver.wait_for(1)

    assert got.headers["webhook-id"] == got.json()["id"]
    sent_at = datetime.fromtimestamp(int(got.headers["webhook-timestamp"]), UTC)
    assert abs(datetime.now(UTC) - sent_at) < timedelta(seconds=5)


async def test_shortstack_node_verifier_accepts_the_hex_signature(
    client: Client,
    tenant: Tenant,
    node_verifier: StartVerifier,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    verifier = await node_verifier("shortstack", SHARED_SECRET)
    await add_endpoint(client, tenant, verifier.url, signature=SHORTSTACK, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="jose@example.com", first_name="Zoë", last_name="Ñúñez")

    row = await settled_lead_delivery(conn)

    assert row["state"] == "succeeded"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["outcome"], a["response_body"]) for a in attempts] == [
        (200, "succeeded", "verified")
    ]


async def test_shortstack_node_verifier_rejects_another_secret_and_the_delivery_is_retried(
    client: Client,
    tenant: Tenant,
    node_verifier: StartVerifier,
    worker: None,
    conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    verifier = await node_verifier("shortstack", "not-the-shared-secret")
    await add_endpoint(client, tenant, verifier.url, signature=SHORTSTACK, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="forged@example.com")

    row = await settled_lead_delivery(conn)

    schedule = len(settings.retry_schedule)
    assert row["state"] == "failed"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["outcome"], a["response_body"]) for a in attempts] == [
        (401, "retrying", "Invalid signature")
    ] * (schedule - 1) + [(401, "failed", "Invalid signature")]


async def test_leaditio_node_verifier_accepts_the_empty_prefix_signature(
    client: Client,
    tenant: Tenant,
    node_verifier: StartVerifier,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    verifier = await node_verifier("leaditio", SHARED_SECRET)
    await add_endpoint(client, tenant, verifier.url, signature=LEADITIO, secret=SHARED_SECRET)
    await post_lead(client, tenant, email="thabo@example.com", first_name="Thabo")

    row = await settled_lead_delivery(conn)

    assert row["state"] == "succeeded"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["response_body"]) for a in attempts] == [(200, "verified")]


async def test_extra_endpoint_headers_arrive_with_every_webhook(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    extra = {"X-Api-Key": "crm-key-123", "X-Source": "leadgate"}
    await add_endpoint(client, tenant, receiver.url, headers=extra)
    await post_lead(client, tenant, email="extra@example.com")

    (got,) = await receiver.wait_for(1)

    assert {name: got.headers[name] for name in extra} == extra
