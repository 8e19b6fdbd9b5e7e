"""The endpoints API: register, validate, list, change, delete, rotate secrets, fan out, test."""

from __future__ import annotations

import asyncio
import base64
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.crypto import Cipher
from tests import deliveries
from tests.conftest import Tenant, TenantFactory
from tests.receivers import Receiver
from tests.workers import conftest as delivery_fixtures
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until

Client = TestClient[Any, Any]

# The delivery fixtures of tests/workers (fast retries, private destinations allowed, local
# receivers) and a real worker, taken by name: tests here run on the same set-up.
settings = delivery_fixtures.settings
receiver_factory = delivery_fixtures.receiver_factory
receiver = delivery_fixtures.receiver
worker = deliveries.worker

URL = "http://127.0.0.1:9/hook"


def whsec(size: int = 32) -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()


async def create(client: Client, tenant: Tenant, **fields: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/endpoints", json=fields, headers=tenant.headers)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def refused_fields(client: Client, tenant: Tenant, **fields: Any) -> dict[str, str]:
    """The `fields` of a 400 answering this create; fails the test on any other answer."""
    status, body = await create(client, tenant, **fields)
    assert status == 400, body
    assert body["error"]["code"] == "invalid_request"
    named: dict[str, str] = body["error"]["fields"]
    return named


async def get_json(client: Client, tenant: Tenant, path: str) -> Any:
    response = await client.get(path, headers=tenant.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def endpoint_count(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM endpoints")
    return count


# --- create -------------------------------------------------------------------------------


async def test_create_returns_201_with_a_generated_32_byte_whsec_secret(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    status, body = await create(client, tenant, url=URL)
    assert status == 201, body
    data = body["data"]
    assert data["id"].startswith("ep_")
    assert (data["url"], data["event_types"], data["headers"]) == (URL, ["*"], {})
    assert (data["enabled"], data["disabled_reason"], data["rate_limit"]) == (True, None, None)
    assert data["signature"]["scheme"] == "standard"
    assert data["health"] == {
        "consecutive_failures": 0,
        "circuit_open_until": None,
        "failing_since": None,
    }
    assert data["secret"].startswith("whsec_")
    assert len(base64.b64decode(data["secret"][len("whsec_") :], validate=True)) == 32
    stored = await conn.fetchval("SELECT secret FROM endpoints WHERE id = $1", data["id"])
    assert stored.startswith("enc1:")
    assert cipher.decrypt_text(stored) == data["secret"]


async def test_secret_is_returned_on_create_only_never_by_get_or_list(
    client: Client, tenant: Tenant
) -> None:
    _, created = await create(client, tenant, url=URL)
    secret = created["data"].pop("secret")

    one = await client.get(f"/v1/endpoints/{created['data']['id']}", headers=tenant.headers)
    listed = await client.get("/v1/endpoints", headers=tenant.headers)

    assert (await one.json())["data"] == created["data"]
    assert (await listed.json())["data"] == [created["data"]]
    assert secret not in await one.text()
    assert secret not in await listed.text()


async def test_given_secret_is_the_one_used(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    given = whsec()
    status, body = await create(client, tenant, url=URL, secret=given)
    assert status == 201, body
    assert body["data"]["secret"] == given
    assert cipher.decrypt_text(await conn.fetchval("SELECT secret FROM endpoints")) == given


@pytest.mark.parametrize(
    "secret",
    [
        "a-plain-secret-string",
        "whsec_not base64 at all!",
        "whsec_" + base64.b64encode(b"too short").decode(),
    ],
    ids=["no-prefix", "not-base64", "short-key"],
)
async def test_standard_scheme_refuses_a_secret_that_is_not_a_valid_whsec(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, secret: str
) -> None:
    fields = await refused_fields(client, tenant, url=URL, secret=secret)
    assert list(fields) == ["secret"]
    assert await endpoint_count(conn) == 0


@pytest.mark.parametrize(
    "event_types",
    [["lead.*"], ["*"], ["lead.created", "lead.stage_changed", "followup.day3"]],
    ids=["prefix", "everything", "exact"],
)
async def test_event_types_accept_exact_types_prefix_patterns_and_star(
    client: Client, tenant: Tenant, event_types: list[str]
) -> None:
    status, body = await create(client, tenant, url=URL, event_types=event_types)
    assert status == 201, body
    assert body["data"]["event_types"] == event_types


@pytest.mark.parametrize(
    "event_types",
    [["Lead Created"], ["lead.*.x"], ["lead.created", "lead..updated"], []],
    ids=["words", "inner-star", "empty-word", "none"],
)
async def test_malformed_event_types_are_refused_naming_event_types(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, event_types: list[str]
) -> None:
    fields = await refused_fields(client, tenant, url=URL, event_types=event_types)
    assert list(fields) == ["event_types"]
    assert await endpoint_count(conn) == 0


async def test_extra_headers_are_kept(client: Client, tenant: Tenant) -> None:
    headers = {"X-Crm-Token": "t0k3n", "X-Source": "leadgate"}
    status, body = await create(client, tenant, url=URL, headers=headers)
    assert status == 201, body
    assert body["data"]["headers"] == headers
    shown = await get_json(client, tenant, f"/v1/endpoints/{body['data']['id']}")
    assert shown["data"]["headers"] == headers


@pytest.mark.parametrize(
    "name", ["webhook-signature", "Content-Type", "Host", "WEBHOOK-ID", "bad header"]
)
async def test_reserved_or_malformed_extra_headers_are_refused(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, name: str
) -> None:
    fields = await refused_fields(client, tenant, url=URL, headers={name: "x"})
    assert list(fields) == ["headers"]
    assert await endpoint_count(conn) == 0


@pytest.mark.parametrize("rate_limit", [1, 10_000])
async def test_rate_limit_within_bounds_is_kept(
    client: Client, tenant: Tenant, rate_limit: int
) -> None:
    status, body = await create(client, tenant, url=URL, rate_limit=rate_limit)
    assert status == 201, body
    assert body["data"]["rate_limit"] == rate_limit


@pytest.mark.parametrize("rate_limit", [0, -1, 10_001])
async def test_rate_limit_out_of_bounds_is_refused(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, rate_limit: int
) -> None:
    fields = await refused_fields(client, tenant, url=URL, rate_limit=rate_limit)
    assert list(fields) == ["rate_limit"]
    assert await endpoint_count(conn) == 0


async def test_hex_signature_scheme_without_header_is_refused(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    fields = await refused_fields(
        client, tenant, url=URL, secret="a-plain-secret", signature={"scheme": "hmac-sha256-hex"}
    )
    assert list(fields) == ["signature"]
    assert await endpoint_count(conn) == 0


async def test_hex_signature_scheme_with_header_takes_a_plain_secret(
    client: Client, tenant: Tenant
) -> None:
    signature = {"scheme": "hmac-sha256-hex", "header": "X-Signature", "prefix": "sha256="}
    status, body = await create(
        client, tenant, url=URL, secret="a-plain-secret", signature=signature
    )
    assert status == 201, body
    assert (body["data"]["signature"], body["data"]["secret"]) == (signature, "a-plain-secret")


async def test_unknown_fields_are_refused(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    fields = await refused_fields(client, tenant, url=URL, retries=3)
    assert list(fields) == ["retries"]
    assert await endpoint_count(conn) == 0


async def test_create_needs_the_manage_scope(
    client: Client, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    reader = await make_tenant("reader", scopes=("ingest", "read"))
    status, body = await create(client, reader, url=URL)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert await endpoint_count(conn) == 0


# --- list, get, change, delete ------------------------------------------------------------


async def test_list_shows_the_tenants_endpoints_in_creation_order(
    client: Client, make_tenant: TenantFactory
) -> None:
    acme, other = await make_tenant("acme"), await make_tenant("other")
    first = await add_endpoint(client, acme, URL, description="first")
    second = await add_endpoint(client, acme, URL, description="second")
    await add_endpoint(client, other, URL)

    listed = await get_json(client, acme, "/v1/endpoints")

    assert [e["id"] for e in listed["data"]] == [first["id"], second["id"]]
    assert [e["description"] for e in listed["data"]] == ["first", "second"]


async def test_get_shows_one_endpoint(client: Client, tenant: Tenant) -> None:
    created = await add_endpoint(client, tenant, URL, event_types=["lead.*"], rate_limit=5)
    del created["secret"]
    shown = await get_json(client, tenant, f"/v1/endpoints/{created['id']}")
    assert shown == {"data": created}


async def test_unknown_endpoint_is_404(client: Client, tenant: Tenant) -> None:
    response = await client.get("/v1/endpoints/ep_missing", headers=tenant.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"description": "mine now"}),
        ("DELETE", "", None),
        ("POST", "/rotate-secret", {}),
        ("POST", "/test", None),
        ("POST", "/replay", {"since": "2000-01-01T00:00:00Z", "state": "failed"}),
    ],
    ids=["get", "patch", "delete", "rotate-secret", "test", "replay"],
)
async def test_another_tenants_endpoint_is_404_and_untouched(
    client: Client,
    make_tenant: TenantFactory,
    conn: asyncpg.Connection,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    owner, intruder = await make_tenant("owner"), await make_tenant("intruder")
    endpoint = await add_endpoint(client, owner, URL, description="theirs")
    before = await conn.fetchrow("SELECT * FROM endpoints WHERE id = $1", endpoint["id"])

    response = await client.request(
        method, f"/v1/endpoints/{endpoint['id']}{suffix}", json=body, headers=intruder.headers
    )

    assert response.status == 404
    error = (await response.json())["error"]
    assert error["code"] == "not_found"
    assert "theirs" not in error["message"]
    after = await conn.fetchrow("SELECT * FROM endpoints WHERE id = $1", endpoint["id"])
    assert dict(after) == dict(before)
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_patch_changes_url_event_types_description_and_enabled(
    client: Client, tenant: Tenant
) -> None:
    endpoint = await add_endpoint(client, tenant, URL, description="old")
    changes = {
        "url": "http://127.0.0.1:10/other",
        "event_types": ["lead.created"],
        "description": "new",
        "enabled": False,
    }

    response = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json=changes, headers=tenant.headers
    )

    assert response.status == 200, await response.text()
    patched = (await response.json())["data"]
    assert {k: patched[k] for k in changes} == changes
    assert patched["updated_at"] > endpoint["updated_at"]
    assert (await get_json(client, tenant, f"/v1/endpoints/{endpoint['id']}"))["data"] == patched


async def test_patch_leaves_fields_it_does_not_name(client: Client, tenant: Tenant) -> None:
    endpoint = await add_endpoint(
        client, tenant, URL, description="keep", headers={"X-A": "1"}, rate_limit=7
    )
    response = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"enabled": False}, headers=tenant.headers
    )
    patched = (await response.json())["data"]
    assert (patched["description"], patched["headers"], patched["rate_limit"]) == (
        "keep",
        {"X-A": "1"},
        7,
    )
    assert (patched["url"], patched["event_types"], patched["enabled"]) == (URL, ["*"], False)


async def test_reenabling_an_endpoint_clears_its_disabled_reason_and_health(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    # One failure, then 410 Gone: the worker disables the endpoint with a reason on record.
    gone = await receiver_factory(statuses=[500, 410])
    endpoint = await add_endpoint(client, tenant, gone.url)
    await post_lead(client, tenant, email="ada@example.com")

    async def disabled() -> bool:
        return not await conn.fetchval(
            "SELECT enabled FROM endpoints WHERE id = $1", endpoint["id"]
        )

    await wait_until(disabled)
    path = f"/v1/endpoints/{endpoint['id']}"
    before = (await get_json(client, tenant, path))["data"]
    assert before["disabled_reason"] == "the receiver answered 410 Gone"
    assert before["health"]["consecutive_failures"] == 1
    assert before["health"]["failing_since"] is not None

    response = await client.patch(path, json={"enabled": True}, headers=tenant.headers)

    assert response.status == 200, await response.text()
    enabled = (await response.json())["data"]
    assert (enabled["enabled"], enabled["disabled_reason"]) == (True, None)
    assert enabled["health"] == {
        "consecutive_failures": 0,
        "circuit_open_until": None,
        "failing_since": None,
    }


async def test_patch_refuses_a_null_url(client: Client, tenant: Tenant) -> None:
    endpoint = await add_endpoint(client, tenant, URL)
    response = await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"url": None}, headers=tenant.headers
    )
    assert response.status == 400
    assert list((await response.json())["error"]["fields"]) == ["url"]


async def test_delete_removes_the_endpoint(client: Client, tenant: Tenant) -> None:
    endpoint = await add_endpoint(client, tenant, URL)
    path = f"/v1/endpoints/{endpoint['id']}"

    response = await client.delete(path, headers=tenant.headers)

    assert response.status == 200
    assert await response.json() == {"id": endpoint["id"], "deleted": True}
    assert (await client.get(path, headers=tenant.headers)).status == 404
    assert (await get_json(client, tenant, "/v1/endpoints"))["data"] == []
    assert (await client.delete(path, headers=tenant.headers)).status == 404


# --- rotate-secret ------------------------------------------------------------------------


async def rotate(client: Client, tenant: Tenant, endpoint_id: str, **body: Any) -> dict[str, Any]:
    response = await client.post(
        f"/v1/endpoints/{endpoint_id}/rotate-secret", json=body, headers=tenant.headers
    )
    assert response.status == 200, await response.text()
    rotated: dict[str, Any] = await response.json()
    return rotated


async def test_rotate_secret_returns_a_new_secret_with_a_24_hour_grace_by_default(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await add_endpoint(client, tenant, URL)

    rotated = await rotate(client, tenant, endpoint["id"])

    assert list(rotated) == ["secret", "previous_secret_expires_at"]
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != endpoint["secret"]
    assert len(base64.b64decode(rotated["secret"][len("whsec_") :], validate=True)) == 32
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(seconds=30)
    row = await conn.fetchrow(
        "SELECT secret, previous_secret, previous_secret_expires_at FROM endpoints"
    )
    assert cipher.decrypt_text(row["secret"]) == rotated["secret"]
    assert cipher.decrypt_text(row["previous_secret"]) == endpoint["secret"]
    assert row["previous_secret_expires_at"] == expires


async def test_rotate_secret_with_zero_grace_keeps_no_previous_secret(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await add_endpoint(client, tenant, URL)

    rotated = await rotate(client, tenant, endpoint["id"], grace_seconds=0)

    assert rotated["previous_secret_expires_at"] is None
    row = await conn.fetchrow(
        "SELECT secret, previous_secret, previous_secret_expires_at FROM endpoints"
    )
    assert cipher.decrypt_text(row["secret"]) == rotated["secret"]
    assert (row["previous_secret"], row["previous_secret_expires_at"]) == (None, None)


async def test_rotate_secret_uses_a_given_secret(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await add_endpoint(client, tenant, URL)
    given = whsec()
    rotated = await rotate(client, tenant, endpoint["id"], secret=given)
    assert rotated["secret"] == given
    assert cipher.decrypt_text(await conn.fetchval("SELECT secret FROM endpoints")) == given


async def test_rotate_secret_refuses_a_secret_the_scheme_cannot_use(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    endpoint = await add_endpoint(client, tenant, URL)
    response = await client.post(
        f"/v1/endpoints/{endpoint['id']}/rotate-secret",
        json={"secret": "not-a-whsec-secret"},
        headers=tenant.headers,
    )
    assert response.status == 400
    assert list((await response.json())["error"]["fields"]) == ["secret"]
    assert (
        cipher.decrypt_text(await conn.fetchval("SELECT secret FROM endpoints"))
        == endpoint["secret"]
    )


async def send_test(client: Client, tenant: Tenant, endpoint_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/endpoints/{endpoint_id}/test", headers=tenant.headers)
    assert response.status == 202, await response.text()
    sent: dict[str, Any] = await response.json()
    return sent


def verifies(secret: str, got: Any) -> bool:
    try:
        Webhook(secret).verify(got.body, got.headers)
    except WebhookVerificationError:
        return False
    return True


async def test_both_secrets_sign_during_the_grace_and_only_the_new_one_after(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url)
    rotated = await rotate(client, tenant, endpoint["id"], grace_seconds=1)
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])

    await send_test(client, tenant, endpoint["id"])
    (during,) = await receiver.wait_for(1)
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
    await send_test(client, tenant, endpoint["id"])
    after = (await receiver.wait_for(2))[1]

    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert (verifies(rotated["secret"], during), verifies(endpoint["secret"], during)) == (
        True,
        True,
    )
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert (verifies(rotated["secret"], after), verifies(endpoint["secret"], after)) == (
        True,
        False,
    )


# --- fan-out and test events --------------------------------------------------------------


async def deliveries_by_endpoint(conn: asyncpg.Connection, event_type: str) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT endpoint_id, count(*) AS n FROM deliveries WHERE event_type = $1"
        " GROUP BY endpoint_id",
        event_type,
    )
    return {r["endpoint_id"]: r["n"] for r in rows}


async def test_new_lead_fans_out_once_to_each_matching_enabled_endpoint(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    everything = await add_endpoint(client, tenant, URL, event_types=["*"])
    leads = await add_endpoint(client, tenant, URL, event_types=["lead.*"])
    await add_endpoint(client, tenant, URL, event_types=["lead.updated"])
    await add_endpoint(client, tenant, URL, event_types=["*"], enabled=False)

    await post_lead(client, tenant, email="ada@example.com")

    assert await deliveries_by_endpoint(conn, "lead.created") == {
        everything["id"]: 1,
        leads["id"]: 1,
    }
    assert await conn.fetchval("SELECT count(*) FROM deliveries") == 2


async def test_lead_update_fans_out_to_exact_prefix_and_star_endpoints(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    everything = await add_endpoint(client, tenant, URL, event_types=["*"])
    leads = await add_endpoint(client, tenant, URL, event_types=["lead.*"])
    updated = await add_endpoint(client, tenant, URL, event_types=["lead.updated"])
    await add_endpoint(client, tenant, URL, event_types=["lead.created"])
    await post_lead(client, tenant, email="ada@example.com")

    await post_lead(client, tenant, email="ada@example.com", first_name="Ada")

    assert await deliveries_by_endpoint(conn, "lead.updated") == {
        everything["id"]: 1,
        leads["id"]: 1,
        updated["id"]: 1,
    }


async def test_endpoints_of_another_tenant_get_no_deliveries(
    client: Client, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    acme, other = await make_tenant("acme"), await make_tenant("other")
    mine = await add_endpoint(client, acme, URL)
    await add_endpoint(client, other, URL)
    await post_lead(client, acme, email="ada@example.com")
    assert await deliveries_by_endpoint(conn, "lead.created") == {mine["id"]: 1}


async def test_test_event_goes_to_that_endpoint_alone_whatever_its_event_types(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    target = await add_endpoint(client, tenant, URL, event_types=["lead.created"])
    await add_endpoint(client, tenant, URL, event_types=["*"])

    sent = await send_test(client, tenant, target["id"])

    assert list(sent) == ["event_id", "delivery_id"]
    assert sent["event_id"].startswith("evt_")
    assert sent["delivery_id"].startswith("dlv_")
    rows = await conn.fetch("SELECT id, endpoint_id, event_id, event_type FROM deliveries")
    assert [tuple(r) for r in rows] == [
        (sent["delivery_id"], target["id"], sent["event_id"], "endpoint.test")
    ]


async def test_test_event_arrives_signed_at_the_receiver(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])

    sent = await send_test(client, tenant, endpoint["id"])

    (got,) = await receiver.wait_for(1)
    payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert (payload["id"], payload["type"]) == (sent["event_id"], "endpoint.test")
    assert payload["data"]["endpoint_id"] == endpoint["id"]
    assert got.headers["webhook-id"] == sent["event_id"]


async def test_extra_headers_are_sent_with_each_webhook(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, headers={"X-Crm-Token": "t0k3n"})
    await send_test(client, tenant, endpoint["id"])
    (got,) = await receiver.wait_for(1)
    assert got.headers["X-Crm-Token"] == "t0k3n"
