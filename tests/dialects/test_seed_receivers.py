"""The seed systems' own receiver code, under Node, reads what it expects from real deliveries
through the shipped templates: event names, lead ids, emails, and not only a valid signature."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant
from tests.dialects.examples import template
from tests.dialects.helpers.seeds import SeedReceiver
from tests.workers.conftest import add_endpoint, post_lead, wait_until

Client = TestClient[Any, Any]
Start = Callable[[str, str], Awaitable[SeedReceiver]]
SECRET = "seed-shared-secret"


@pytest.fixture
async def seed_receiver() -> AsyncIterator[Start]:
    started: list[SeedReceiver] = []

    async def start(system: str, secret: str) -> SeedReceiver:
        receiver = await SeedReceiver.start(system, secret)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


def _hex(header: str, prefix: str = "") -> dict[str, str]:
    return {"scheme": "hmac-sha256-hex", "header": header, "prefix": prefix}


async def test_shortstacks_handler_reads_created_and_status_changed(
    client: Client, tenant: Tenant, seed_receiver: Start, worker: None
) -> None:
    shortstack = await seed_receiver("shortstack", SECRET)
    await add_endpoint(
        client, tenant, shortstack.url, secret=SECRET, template=template("shortstack"),
        signature=_hex("X-ShortStack-Signature", "sha256="),
        event_types=["lead.created", "lead.stage_changed"],
    )  # fmt: skip
    lead = await post_lead(client, tenant, email="james@example.com", first_name="James")
    await post_lead(client, tenant, email="james@example.com", stage="contacted")
    created, changed = await shortstack.wait_seen(2)
    assert created[0] == ["lead.created"]
    assert created[1][0]["leadId"] == lead["id"]
    assert created[1][0]["email"] == "james@example.com"
    assert created[1][0]["firstName"] == "James"
    assert created[2][0].endswith("Z") and len(created[2][0]) == 24  # …T09:15:00.000Z
    assert changed[0] == ["lead.status_changed"]
    assert (changed[1][0]["status"], changed[1][0]["previousStatus"]) == ("contacted", "new")


async def test_leaditios_handler_reads_new_and_updated(
    client: Client, tenant: Tenant, seed_receiver: Start, worker: None
) -> None:
    leaditio = await seed_receiver("leaditio", SECRET)
    await add_endpoint(
        client, tenant, leaditio.url, secret=SECRET, template=template("leaditio"),
        signature=_hex("X-Leaditio-Signature"), event_types=["lead.created", "lead.updated"],
    )  # fmt: skip
    lead = await post_lead(client, tenant, email="thabo.m@example.com", phone="+27823456789")
    await post_lead(client, tenant, email="thabo.m@example.com", custom_data={"suburb": "Sandton"})
    new, updated = await leaditio.wait_seen(2)
    assert new[:3] == [["lead.new"], [lead["id"]], ["thabo.m@example.com"]]
    assert updated[:3] == [["lead.updated"], [lead["id"]], ["thabo.m@example.com"]]
    assert len(new[3][0]) == len("2026-05-20T10:23:44Z")


async def test_salesos_verifier_over_json_stringify_passes_and_reads_its_fields(
    client: Client,
    tenant: Tenant,
    seed_receiver: Start,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    salesos = await seed_receiver("salesos", SECRET)
    await add_endpoint(
        client, tenant, salesos.url, secret=SECRET, template=template("salesos"),
        signature=_hex("X-Webhook-Signature"),
    )  # fmt: skip
    # What breaks a byte-for-byte re-serialisation: a form's "80" and "-0", an integer-like key.
    response = await client.post(
        "/v1/postback",
        data={"email": "john@acme.com", "first_name": "John", "last_name": "Doe",
              "company": "Acme Inc", "form_completion_percent": "80", "estimated_value": "-0",
              "custom_data[industry]": "Technology", "custom_data[2]": "x"},
        headers=tenant.headers,
    )  # fmt: skip
    lead = (await response.json())["data"]
    ((label, body),) = (await salesos.wait_seen(1))[0]
    assert label == "Webhook verified:"
    assert body["event"] == "lead.created"
    assert body["data"]["id"] == lead["id"]
    assert (body["data"]["contact_name"], body["data"]["contact_email"]) == (
        "John Doe", "john@acme.com",
    )  # fmt: skip
    assert body["data"]["form_completion_percent"] == 80

    async def succeeded() -> bool:
        state = await conn.fetchval("SELECT state FROM deliveries LIMIT 1")
        return bool(state == "succeeded")

    await wait_until(succeeded)


async def test_salesos_verifier_passes_without_a_template_too(
    client: Client, tenant: Tenant, seed_receiver: Start, worker: None
) -> None:
    salesos = await seed_receiver("salesos", SECRET)
    await add_endpoint(client, tenant, salesos.url, secret=SECRET,
                       signature=_hex("X-Webhook-Signature"))  # fmt: skip
    await client.post(
        "/v1/postback",
        json={"email": "plain@example.com", "form_completion_percent": 80.0,
              "custom_data": {"b": 1, "2": -0.0, "big": 2**60, "tiny": 1e-7}},
        headers=tenant.headers,
    )  # fmt: skip
    ((label, body),) = (await salesos.wait_seen(1))[0]
    assert label == "Webhook verified:"
    assert body["type"] == "lead.created"
    assert body["data"]["custom_data"] == {"2": 0, "b": 1, "big": str(2**60), "tiny": 1e-7}


async def test_salesos_verifier_rejects_a_body_javascript_writes_back_differently(
    seed_receiver: Start,
) -> None:
    """The verifier is as strict as its docs say: what Leadgate once sent ("80.0") fails it."""
    import hashlib
    import hmac

    import aiohttp

    salesos = await seed_receiver("salesos", SECRET)
    for body, status in ((b'{"percent":80.0}', 401), (b'{"percent":80}', 200)):
        signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        async with aiohttp.ClientSession() as http, http.post(
            salesos.url, data=body,
            headers={"Content-Type": "application/json", "X-Webhook-Signature": signature},
        ) as response:  # fmt: skip
            assert response.status == status
