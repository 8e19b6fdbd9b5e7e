"""Inbound events: verified, stored once with their raw body, linked, fanned out; opt-outs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from standardwebhooks.webhooks import Webhook

from tests.conftest import TEST_SECRET_KEYS, Tenant, events_of

Client = TestClient[Any, Any]


async def add_source(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/sources", json={"name": "sms", **fields}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 201, body
    source: dict[str, Any] = body["data"]
    return source


def signed(
    secret: str, payload: dict[str, Any], *, msg_id: str = "msg_1", at: float | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body and the Standard Webhooks headers a provider would send, made by the reference
    implementation (the `standardwebhooks` package), not by Leadgate."""
    body = orjson.dumps(payload)
    stamp = int(at if at is not None else time.time())
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(stamp, UTC), body.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    return body, headers


async def inbound(client: Client, tenant: Tenant, body: bytes, headers: dict[str, str]) -> Any:
    return await client.post("/v1/inbound/sms", data=body, headers={**tenant.headers, **headers})


async def stored(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM inbound_events ORDER BY received_at")


async def new_lead(client: Client, tenant: Tenant, **fields: Any) -> str:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    lead_id: str = (await response.json())["data"]["id"]
    return lead_id


async def test_signed_event_is_stored_with_its_raw_body_and_linked_by_email(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    lead_id = await new_lead(client, tenant, email="ada@example.com")
    body, headers = signed(
        source["secret"], {"type": "customer.reply", "email": "ADA@example.com", "body": "Tack!"}
    )
    response = await inbound(client, tenant, body, headers)
    data = (await response.json())["data"]
    assert response.status == 201
    assert data["type"] == "customer.reply"
    assert data["lead_id"] == lead_id
    assert data["duplicate"] is False
    (row,) = await stored(conn)
    assert row["body"].encode() == body
    assert row["external_id"] == "msg_1"


async def test_event_is_fanned_out_under_its_own_type(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "r-9", "type": "customer.reply"})
    await inbound(client, tenant, body, headers)
    (event,) = await events_of(conn, tenant.id)
    assert event["type"] == "customer.reply"
    assert event["body"]["data"]["source"] == "sms"
    assert event["body"]["data"]["id"] == "r-9"
    assert event["body"]["data"]["payload"] == {"id": "r-9", "type": "customer.reply"}


async def test_bad_signature_is_401_and_stores_nothing(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_source(client, tenant)
    body, headers = signed("whsec_" + "QUFB" * 8, {"type": "customer.reply"})
    response = await inbound(client, tenant, body, headers)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert await stored(conn) == []
    assert await events_of(conn, tenant.id) == []


async def test_missing_signature_is_401(client: Client, tenant: Tenant) -> None:
    await add_source(client, tenant)
    response = await inbound(
        client, tenant, b'{"id":"x","type":"customer.reply"}', {"Content-Type": "application/json"}
    )
    assert response.status == 401


async def test_stale_signature_is_401(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant, tolerance_seconds=60)
    body, headers = signed(source["secret"], {"type": "customer.reply"}, at=time.time() - 120)
    response = await inbound(client, tenant, body, headers)
    assert response.status == 401
    assert "tolerance" in (await response.json())["error"]["message"]
    assert await stored(conn) == []


async def test_tampered_body_is_401(client: Client, tenant: Tenant) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"type": "customer.reply", "body": "yes"})
    response = await inbound(client, tenant, body.replace(b"yes", b"no!"), headers)
    assert response.status == 401


async def test_resent_event_answers_200_and_changes_nothing(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "e-1", "type": "customer.reply"})
    first = await inbound(client, tenant, body, headers)
    again = await inbound(client, tenant, body, headers)
    assert (first.status, again.status) == (201, 200)
    again_data = (await again.json())["data"]
    assert again_data["duplicate"] is True
    assert again_data["id"] == (await first.json())["data"]["id"]
    assert len(await stored(conn)) == 1
    assert len(await events_of(conn, tenant.id)) == 1


async def test_same_event_posted_twenty_times_at_once_is_stored_once(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "burst", "type": "customer.reply"})
    responses = await asyncio.gather(*(inbound(client, tenant, body, headers) for _ in range(20)))
    assert sorted(r.status for r in responses) == [200] * 19 + [201]
    assert len(await stored(conn)) == 1
    assert len(await events_of(conn, tenant.id)) == 1


async def test_webhook_id_header_is_the_id_when_the_body_has_none(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"event": "customer.reply"}, msg_id="hdr-7")
    response = await inbound(client, tenant, body, headers)
    assert response.status == 201
    assert (await stored(conn))[0]["external_id"] == "hdr-7"


async def test_event_without_a_type_is_400(client: Client, tenant: Tenant) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "t-1"})
    response = await inbound(client, tenant, body, headers)
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"type": "required"}


async def test_links_by_lead_id_then_phone(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    source = await add_source(client, tenant)
    by_id = await new_lead(client, tenant, email="i@example.com")
    by_phone = await new_lead(client, tenant, phone="+14155550123")
    body, headers = signed(
        source["secret"], {"id": "a", "type": "customer.reply", "lead_id": by_id}
    )
    assert (await (await inbound(client, tenant, body, headers)).json())["data"]["lead_id"] == by_id
    body, headers = signed(
        source["secret"],
        {"id": "b", "type": "customer.reply", "phone": "+1 415 555 0123"},
        msg_id="m2",
    )
    got = (await (await inbound(client, tenant, body, headers)).json())["data"]["lead_id"]
    assert got == by_phone


async def test_opt_out_marks_the_lead_and_cancels_its_pending_deliveries(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO endpoints (id, tenant_id, url, secret)"
        " VALUES ('ep_o', $1, 'http://x.example/', 'whsec_x')",
        tenant.id,
    )
    source = await add_source(client, tenant)
    lead_id = await new_lead(client, tenant, email="o@example.com")
    await client.post(
        "/v1/events",
        json={"type": "followup.day3", "lead_id": lead_id, "delay": 600},
        headers=tenant.headers,
    )
    body, headers = signed(
        source["secret"], {"id": "o-1", "type": "customer.opt_out", "email": "o@example.com"}
    )
    assert (await inbound(client, tenant, body, headers)).status == 201
    lead = (await (await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)).json())["data"]
    assert lead["opted_out_at"] is not None
    states = await conn.fetch(
        "SELECT event_type, state FROM deliveries WHERE lead_id = $1 ORDER BY created_at", lead_id
    )
    by_type = {r["event_type"]: r["state"] for r in states}
    assert by_type["lead.created"] == "cancelled"
    assert by_type["followup.day3"] == "cancelled"
    assert by_type["customer.opt_out"] == "pending"  # the opt-out itself still goes out


async def test_later_postback_does_not_undo_an_opt_out(client: Client, tenant: Tenant) -> None:
    source = await add_source(client, tenant)
    lead_id = await new_lead(client, tenant, email="p@example.com")
    body, headers = signed(
        source["secret"], {"id": "p-1", "type": "customer.opt_out", "lead_id": lead_id}
    )
    await inbound(client, tenant, body, headers)
    response = await client.post(
        "/v1/postback",
        json={"email": "p@example.com", "opted_out_at": None, "first_name": "P"},
        headers=tenant.headers,
    )
    assert (await response.json())["data"]["opted_out_at"] is not None


async def test_hmac_hex_source_verifies_the_named_header(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    secret = "shared-secret-1"
    await add_source(
        client,
        tenant,
        secret=secret,
        signature={"scheme": "hmac-sha256-hex", "header": "X-Signature", "prefix": "sha256="},
    )
    body = b'{"id":"h-1","type":"customer.reply"}'
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    good = await inbound(
        client,
        tenant,
        body,
        {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"},
    )
    bad = await inbound(
        client,
        tenant,
        body.replace(b"h-1", b"h-2"),
        {"X-Signature": f"sha256={digest}", "Content-Type": "application/json"},
    )
    assert (good.status, bad.status) == (201, 401)


async def test_key_may_come_in_the_query_string(client: Client, tenant: Tenant) -> None:
    source = await add_source(client, tenant)
    body, headers = signed(source["secret"], {"id": "q-1", "type": "customer.reply"})
    response = await client.post(
        f"/v1/inbound/sms?api_key={tenant.key}", data=body, headers=headers
    )
    assert response.status == 201


async def test_unknown_source_is_404(client: Client, tenant: Tenant) -> None:
    response = await client.post("/v1/inbound/nope", data=b"{}", headers=tenant.headers)
    assert response.status == 404


async def test_another_tenants_source_is_404(
    client: Client, tenant: Tenant, make_tenant: Any
) -> None:
    other = await make_tenant("other")
    await add_source(client, other)
    response = await client.get("/v1/sources/sms", headers=tenant.headers)
    assert response.status == 404


async def test_sources_never_show_their_secret_after_creation(
    client: Client, tenant: Tenant
) -> None:
    await add_source(client, tenant)
    listed = (await (await client.get("/v1/sources", headers=tenant.headers)).json())["data"]
    assert [s["name"] for s in listed] == ["sms"]
    assert "secret" not in listed[0]


async def test_duplicate_source_name_is_409(client: Client, tenant: Tenant) -> None:
    await add_source(client, tenant)
    again = await client.post("/v1/sources", json={"name": "sms"}, headers=tenant.headers)
    assert again.status == 409


async def test_cli_registers_a_hex_source_and_lists_it_without_its_secret(
    client: Client, tenant: Tenant, servers: Any
) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    env = {"LEADGATE_DATABASE_URL": servers.database_url, "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS}
    runner = CliRunner()
    added = await asyncio.to_thread(
        runner.invoke, main,
        ["sources", "add", "--tenant", tenant.id, "crm", "--scheme", "hmac-sha256-hex",
         "--header", "X-Sig", "--prefix", "sha256=", "--secret", "shared-secret", "--json"],
        env=env,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    source = orjson.loads(added.output)
    assert source["secret"] == "shared-secret"
    assert source["signature"] == {"scheme": "hmac-sha256-hex", "header": "X-Sig",
                                   "prefix": "sha256="}  # fmt: skip
    listed = await asyncio.to_thread(
        runner.invoke, main, ["sources", "list", "--tenant", tenant.id, "--json"], env=env
    )
    assert [s["name"] for s in orjson.loads(listed.output)] == ["crm"]
    assert "shared-secret" not in listed.output
    body = b'{"id":"c-1","type":"customer.reply"}'
    digest = hmac.new(b"shared-secret", body, hashlib.sha256).hexdigest()
    response = await client.post(
        "/v1/inbound/crm", data=body,
        headers={**tenant.headers, "X-Sig": f"sha256={digest}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status == 201


async def test_cli_refuses_a_hex_source_without_a_header(tenant: Tenant, servers: Any) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    result = await asyncio.to_thread(
        CliRunner().invoke, main,
        ["sources", "add", "--tenant", tenant.id, "crm", "--scheme", "hmac-sha256-hex"],
        env={"LEADGATE_DATABASE_URL": servers.database_url},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "header" in result.output


def ed25519_signed(key: Ed25519PrivateKey, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A body and headers as a provider signing with Ed25519 sends them (`cryptography`)."""
    body, stamp = orjson.dumps(payload), str(int(time.time()))
    signature = key.sign(f"msg_ed.{stamp}.".encode() + body)
    return body, {"webhook-id": "msg_ed", "webhook-timestamp": stamp,
                  "webhook-signature": "v1a," + base64.b64encode(signature).decode(),
                  "Content-Type": "application/json"}  # fmt: skip


async def test_an_ed25519_source_accepts_what_its_public_key_verifies_and_nothing_else(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    provider, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = "whpk_" + base64.b64encode(provider.public_key().public_bytes_raw()).decode()
    await add_source(client, tenant, signature={"scheme": "ed25519"}, secret=public)

    forged = await inbound(client, tenant, *ed25519_signed(stranger, {"type": "customer.reply"}))
    genuine = await inbound(client, tenant, *ed25519_signed(provider, {"type": "customer.reply"}))

    assert forged.status == 401
    assert genuine.status == 201, await genuine.json()
    assert len(await stored(conn)) == 1


async def test_an_ed25519_source_needs_the_providers_public_key(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/sources", json={"name": "sms", "signature": {"scheme": "ed25519"}},
        headers=tenant.headers,
    )  # fmt: skip

    body = await response.json()
    assert response.status == 400, body
    assert list(body["error"]["fields"]) == ["secret"]
