"""Payload templates on endpoints: compiled on save, rendered once per delivery, signed as sent,
and a template that fails on an event ends that delivery `failed` with a template_error."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.conftest import Tenant
from tests.dialects.examples import template
from tests.receivers import Receiver
from tests.workers.conftest import ReceiverFactory, add_endpoint, delivery_of, post_lead, wait_until

Client = TestClient[Any, Any]


async def test_a_template_that_does_not_compile_is_a_400_naming_template(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/endpoints",
        json={"url": "https://crm.example.com/hook", "template": '{"a": data.email'},
        headers=tenant.headers,
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["code"] == "invalid_request"
    message = body["error"]["fields"]["template"]
    assert message.startswith("the template does not compile: S0203")  # the engine's code


async def test_a_template_is_set_changed_and_removed(client: Client, tenant: Tenant) -> None:
    endpoint = await add_endpoint(
        client, tenant, "https://crm.example.com/hook", template=template("leaditio")
    )
    assert endpoint["template"] == template("leaditio")
    path = f"/v1/endpoints/{endpoint['id']}"
    bad = await client.patch(path, json={"template": "data."}, headers=tenant.headers)
    assert bad.status == 400
    assert "template" in (await bad.json())["error"]["fields"]
    removed = await client.patch(path, json={"template": None}, headers=tenant.headers)
    assert (await removed.json())["data"]["template"] is None
    got = await client.get(path, headers=tenant.headers)
    assert (await got.json())["data"]["template"] is None


async def test_the_rendered_body_is_sent_and_the_signature_covers_it(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, template=template("leaditio"))
    lead = await post_lead(client, tenant, email="thabo@example.com", phone="+27823456789",
                           custom_data={"vertical": "solar"})  # fmt: skip
    (got,) = await receiver.wait_for(1)
    payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert payload["event"] == "lead.new"
    assert payload["lead"]["id"] == lead["id"]
    assert payload["lead"]["vertical"] == "solar"
    assert payload["contact"] == {"phone": "+27823456789", "email": "thabo@example.com"}
    assert got.headers["webhook-id"].startswith("evt_")


async def test_every_retry_sends_the_first_rendering_even_after_the_template_changes(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[500, 500, 200])
    endpoint = await add_endpoint(client, tenant, receiver.url, template='{"v": 1, "id": data.id}')
    await post_lead(client, tenant, email="same@example.com")
    await receiver.wait_for(1)
    await client.patch(
        f"/v1/endpoints/{endpoint['id']}", json={"template": '{"v": 2}'}, headers=tenant.headers
    )
    got = await receiver.wait_for(3)
    assert len({r.body for r in got}) == 1
    assert orjson.loads(got[0].body)["v"] == 1
    row = await delivery_of(conn)
    assert row["body"].encode() == got[0].body


async def _failed(conn: asyncpg.Connection) -> Any:
    async def ended() -> bool:
        row = await delivery_of(conn)
        return row is not None and row["state"] == "failed"

    await wait_until(ended)
    return await delivery_of(conn)


async def test_a_template_failing_on_an_event_fails_the_delivery_once_and_replays_when_fixed(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None, conn: asyncpg.Connection
) -> None:
    endpoint = await add_endpoint(
        client, tenant, receiver.url, template='data.email ? $error("no emails here") : data'
    )
    await post_lead(client, tenant, email="broken@example.com")
    row = await _failed(conn)
    attempts = await conn.fetch(
        "SELECT attempt, status, outcome, error FROM delivery_attempts WHERE delivery_id = $1",
        row["id"],
    )
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [(1, None, "failed")]
    assert attempts[0]["error"].startswith("template_error: ")
    assert "no emails here" in attempts[0]["error"]
    assert row["last_error"] == attempts[0]["error"]
    assert receiver.received == []
    health = await conn.fetchrow("SELECT * FROM endpoints WHERE id = $1", endpoint["id"])
    assert (health["consecutive_failures"], health["failing_since"]) == (0, None)

    await client.patch(
        f"/v1/endpoints/{endpoint['id']}",
        json={"template": '{"email": data.email}'},
        headers=tenant.headers,
    )
    retry = await client.post(f"/v1/deliveries/{row['id']}/retry", headers=tenant.headers)
    assert retry.status == 200, await retry.text()
    (got,) = await receiver.wait_for(1)
    assert got.json() == {"email": "broken@example.com"}


async def test_a_template_with_no_result_for_an_event_is_a_template_error(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, receiver.url, template='type = "lead.deleted" ? data')
    await post_lead(client, tenant, email="nothing@example.com")
    row = await _failed(conn)
    assert row["last_error"] == "template_error: the template gave no result for this event"


async def test_the_test_event_renders_through_the_template(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None
) -> None:
    endpoint = await add_endpoint(client, tenant, receiver.url, template=template("shortstack"))
    response = await client.post(f"/v1/endpoints/{endpoint['id']}/test", headers=tenant.headers)
    assert response.status == 202
    (got,) = await receiver.wait_for(1)
    body = got.json()
    assert body["event"] == "endpoint.test"
    assert set(body) == {"event", "timestamp", "data"}
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) == len(
        "2026-05-20T10:23:44.512Z"
    )


async def test_preview_renders_the_sample_event(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/templates/preview", json={"template": template("leaditio")}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 200, body
    assert body["result"]["event"] == "lead.new"
    assert orjson.loads(body["body"]) == body["result"]
    assert body["event"]["type"] == "lead.created"


async def test_preview_renders_a_given_event(client: Client, tenant: Tenant) -> None:
    event = {"id": "evt_1", "type": "lead.stage_changed", "timestamp": "2026-01-02T03:04:05Z",
             "data": {"id": "lead_1", "stage": "won", "previous_stage": "proposal"}}  # fmt: skip
    response = await client.post(
        "/v1/templates/preview",
        json={"template": template("shortstack"), "event": event},
        headers=tenant.headers,
    )
    body = await response.json()
    assert body["result"]["event"] == "lead.status_changed"
    assert body["result"]["data"] == {"leadId": "lead_1", "status": "won",
                                      "previousStatus": "proposal"}  # fmt: skip
    assert body["result"]["timestamp"] == "2026-01-02T03:04:05.000Z"


async def test_preview_of_a_template_failing_on_the_event_is_a_400_naming_template(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/templates/preview", json={"template": '$error("nope")'}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["fields"]["template"] == "D3137: nope"


async def test_preview_needs_the_manage_scope(client: Client, make_tenant: Any) -> None:
    reader = await make_tenant("reader", scopes=("read",))
    response = await client.post(
        "/v1/templates/preview", json={"template": "data"}, headers=reader.headers
    )
    assert response.status == 403


async def test_erasing_a_lead_drops_its_rendered_bodies(
    client: Client, tenant: Tenant, receiver: Receiver, worker: None, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, receiver.url, template='{"email": data.email}')
    lead = await post_lead(client, tenant, email="forget-me@example.com")
    await receiver.wait_for(1)

    async def kept() -> bool:
        row = await delivery_of(conn)
        return row is not None and row["state"] == "succeeded" and row["body"] is not None

    await wait_until(kept)
    erased = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert erased.status == 200
    bodies = await conn.fetch("SELECT body FROM deliveries WHERE lead_id = $1", lead["id"])
    assert all(b["body"] is None or b"forget-me" not in b["body"].encode() for b in bodies)
    assert (await delivery_of(conn))["body"] is None
