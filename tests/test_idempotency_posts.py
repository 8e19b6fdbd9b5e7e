"""Idempotency-Key on every POST: the first response replayed byte for byte, the change made
once, a different request with the key refused; responses that hold a secret stored encrypted."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import OPERATIONS
from gateway.crypto import Cipher
from tests.conftest import Tenant

Client = TestClient[Any, Any]


async def twice(
    client: Client, tenant: Tenant, path: str, body: dict[str, Any] | None, key: str
) -> tuple[Any, Any, bytes, bytes]:
    headers = {**tenant.headers, "Idempotency-Key": key}
    first = await client.post(path, json=body, headers=headers)
    first_body = await first.read()
    second = await client.post(path, json=body, headers=headers)
    second_body = await second.read()
    assert first.status < 300, first_body
    assert second.status == first.status
    assert second_body == first_body
    assert second.headers["Idempotent-Replayed"] == "true"
    return first, second, first_body, second_body


async def stored_body(conn: asyncpg.Connection, key: str) -> bytes:
    body: bytes = await conn.fetchval("SELECT body FROM idempotency_keys WHERE key = $1", key)
    return body


async def new_endpoint(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    body = {"url": "http://127.0.0.1:9/hook", **fields}
    response = await client.post("/v1/endpoints", json=body, headers=tenant.headers)
    assert response.status == 201, await response.text()
    data: dict[str, Any] = (await response.json())["data"]
    return data


@pytest.fixture
def settings(settings: Any) -> Any:
    return settings.model_copy(update={"allow_private_destinations": True})


async def test_endpoint_create_replays_the_same_endpoint_and_secret_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    body = {"url": "http://127.0.0.1:9/hook"}
    *_, first, _ = await twice(client, tenant, "/v1/endpoints", body, "ep-1")

    assert await conn.fetchval("SELECT count(*) FROM endpoints") == 1
    assert b"whsec_" in first
    stored = await stored_body(conn, "ep-1")
    assert stored.startswith(b"enc1:") and b"whsec_" not in stored


async def test_endpoint_create_with_the_key_and_another_body_is_422(
    client: Client, tenant: Tenant
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "ep-2"}
    await client.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/a"}, headers=headers)
    other = await client.post(
        "/v1/endpoints", json={"url": "http://127.0.0.1:9/b"}, headers=headers
    )

    assert other.status == 422
    assert (await other.json())["error"]["code"] == "idempotency_key_reused"


async def test_rotate_secret_replayed_rotates_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await new_endpoint(client, tenant)
    path = f"/v1/endpoints/{endpoint['id']}/rotate-secret"
    first, *_ = await twice(client, tenant, path, {}, "rot-1")
    rotated = (await first.json())["secret"]

    row = await conn.fetchrow("SELECT secret, previous_secret FROM endpoints")
    # Rotated once: the previous secret is still the one the endpoint was created with.
    assert cipher.decrypt_text(row["secret"]) == rotated
    assert cipher.decrypt_text(row["previous_secret"]) == endpoint["secret"]
    assert (await stored_body(conn, "rot-1")).startswith(b"enc1:")


async def test_a_test_event_replayed_is_sent_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    endpoint = await new_endpoint(client, tenant)
    await twice(client, tenant, f"/v1/endpoints/{endpoint['id']}/test", None, "test-1")

    assert await conn.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_replay_retry_and_stop_replay_their_first_answer(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    endpoint = await new_endpoint(client, tenant)
    lead = await client.post(
        "/v1/postback", json={"email": "a@example.com"}, headers=tenant.headers
    )
    lead_id = (await lead.json())["data"]["id"]
    await conn.execute("UPDATE deliveries SET state = 'failed'")
    delivery_id = await conn.fetchval("SELECT id FROM deliveries")

    await twice(client, tenant, f"/v1/deliveries/{delivery_id}/retry", None, "retry-1")
    await conn.execute("UPDATE deliveries SET state = 'failed'")
    _, _, replayed, _ = await twice(
        client, tenant, f"/v1/endpoints/{endpoint['id']}/replay",
        {"since": "2000-01-01T00:00:00Z"}, "replay-1",
    )  # fmt: skip
    assert replayed == b'{"replayed":1}'
    _, _, stopped, _ = await twice(client, tenant, f"/v1/leads/{lead_id}/stop", None, "stop-1")
    assert stopped == b'{"cancelled":1}'


async def test_source_create_replays_the_same_secret_stored_encrypted(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    *_, first, _ = await twice(client, tenant, "/v1/sources", {"name": "sms"}, "src-1")

    assert await conn.fetchval("SELECT count(*) FROM sources") == 1
    assert b"whsec_" in first
    assert (await stored_body(conn, "src-1")).startswith(b"enc1:")


async def test_mapping_create_and_template_preview_replay(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    mapping = {"name": "m1", "expression": '{"email": contact_email}'}
    await twice(client, tenant, "/v1/mappings", mapping, "map-1")
    assert await conn.fetchval("SELECT count(*) FROM mappings") == 1
    preview = {"template": '{"event": type}'}
    await twice(client, tenant, "/v1/templates/preview", preview, "prev-1")


def test_every_post_of_the_api_declares_the_idempotency_key() -> None:
    from gateway.health import package_version
    from gateway.openapi import build_document

    document = build_document(OPERATIONS, package_version())
    posts = [(p, ops["post"]) for p, ops in document["paths"].items() if "post" in ops]
    assert posts
    for path, op in posts:
        names = {p.get("name") for p in op.get("parameters", [])}
        assert "Idempotency-Key" in names, path
