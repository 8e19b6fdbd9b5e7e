"""Publishing custom and scheduled events, and stopping a lead's pending deliveries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests import deliveries
from tests.conftest import Tenant, TenantFactory, events_of
from tests.deliveries import worker_running
from tests.workers import conftest as delivery_fixtures
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until

Client = TestClient[Any, Any]

# The delivery fixtures of tests/workers (fast retries, private destinations allowed, local
# receivers) and a real worker, taken by name: tests here run on the same set-up.
settings = delivery_fixtures.settings
receiver_factory = delivery_fixtures.receiver_factory
worker = deliveries.worker

URL = "http://127.0.0.1:9/hook"


async def publish(
    client: Client, tenant: Tenant, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/events", json=body, headers={**tenant.headers, **headers})
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def due_times(conn: asyncpg.Connection, event_id: str) -> list[datetime]:
    rows = await conn.fetch(
        "SELECT next_attempt_at FROM deliveries WHERE event_id = $1 ORDER BY id", event_id
    )
    return [r["next_attempt_at"] for r in rows]


async def test_custom_event_is_stored_as_an_envelope_and_fanned_out(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    everything = await add_endpoint(client, tenant, URL, event_types=["*"])
    followups = await add_endpoint(client, tenant, URL, event_types=["followup.*"])
    await add_endpoint(client, tenant, URL, event_types=["lead.*"])
    lead = await post_lead(client, tenant, email="ada@example.com")
    data = {"template": "day3", "channel": "sms", "attempt": 1}

    status, body = await publish(
        client, tenant, {"type": "followup.day3", "lead_id": lead["id"], "data": data}
    )

    assert status == 201, body
    published = body["data"]
    assert published["id"].startswith("evt_")
    assert {k: v for k, v in published.items() if k != "id"} == {
        "type": "followup.day3",
        "lead_id": lead["id"],
        "deliver_at": None,
        "deliveries": 2,
    }
    (stored,) = [e for e in await events_of(conn, tenant.id) if e["type"] == "followup.day3"]
    assert (stored["id"], stored["lead_id"]) == (published["id"], lead["id"])
    assert list(stored["body"]) == ["id", "type", "timestamp", "data"]
    assert (stored["body"]["id"], stored["body"]["type"], stored["body"]["data"]) == (
        published["id"],
        "followup.day3",
        data,
    )
    assert stored["body"]["timestamp"].endswith("Z")
    rows = await conn.fetch(
        "SELECT endpoint_id, lead_id FROM deliveries WHERE event_id = $1", published["id"]
    )
    assert sorted(tuple(r) for r in rows) == sorted(
        [(everything["id"], lead["id"]), (followups["id"], lead["id"])]
    )


async def test_custom_event_without_a_lead_is_published(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, URL)
    status, body = await publish(client, tenant, {"type": "campaign.paused", "data": {"id": 7}})
    assert status == 201, body
    assert (body["data"]["lead_id"], body["data"]["deliveries"]) == (None, 1)
    assert await conn.fetchval("SELECT lead_id FROM deliveries") is None


async def test_delay_schedules_the_deliveries_that_many_seconds_later(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, URL)
    await add_endpoint(client, tenant, URL)
    sent_at = datetime.now(UTC)

    status, body = await publish(client, tenant, {"type": "followup.day3", "delay": 60})

    assert status == 201, body
    deliver_at = datetime.fromisoformat(body["data"]["deliver_at"])
    assert timedelta(seconds=60) <= deliver_at - sent_at < timedelta(seconds=65)
    assert await due_times(conn, body["data"]["id"]) == [deliver_at, deliver_at]


async def test_deliver_at_schedules_the_deliveries_at_that_instant(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, URL)
    zone = timezone(timedelta(hours=2))
    when = (datetime.now(zone) + timedelta(days=3)).replace(microsecond=0)

    status, body = await publish(
        client, tenant, {"type": "followup.day3", "deliver_at": when.isoformat()}
    )

    assert status == 201, body
    assert datetime.fromisoformat(body["data"]["deliver_at"]) == when
    assert await due_times(conn, body["data"]["id"]) == [when]


async def test_scheduled_event_is_not_delivered_before_its_time(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory()
    await add_endpoint(client, tenant, receiver.url)
    _, later = await publish(client, tenant, {"type": "followup.later", "delay": 3600})
    _, soon = await publish(client, tenant, {"type": "followup.soon", "delay": 0.3})

    (got,) = await receiver.wait_for(1)

    assert got.json()["id"] == soon["data"]["id"]
    assert datetime.now(UTC) >= datetime.fromisoformat(soon["data"]["deliver_at"])

    async def delivered() -> bool:
        state = await conn.fetchval(
            "SELECT state FROM deliveries WHERE event_id = $1", soon["data"]["id"]
        )
        return state == "succeeded"

    await wait_until(delivered)
    state = await conn.fetchval(
        "SELECT state FROM deliveries WHERE event_id = $1", later["data"]["id"]
    )
    assert (state, len(receiver.received)) == ("pending", 1)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            {"type": "followup.day3", "delay": 60, "deliver_at": "2030-01-01T00:00:00Z"},
            {"delay", "deliver_at"},
        ),
        ({"type": "followup.day3", "deliver_at": "2030-01-01T09:00:00"}, {"deliver_at"}),
        ({"type": "followup.day3", "delay": -1}, {"delay"}),
        ({"type": "lead.created"}, {"type"}),
        ({"type": "lead.custom_thing"}, {"type"}),
        ({"type": "endpoint.test"}, {"type"}),
        ({"type": "Followup Day3"}, {"type"}),
        ({"type": "followup.day3", "colour": "red"}, {"colour"}),
    ],
    ids=[
        "delay-and-deliver-at",
        "naive-deliver-at",
        "negative-delay",
        "lead-created",
        "lead-prefix",
        "endpoint-prefix",
        "malformed-type",
        "unknown-field",
    ],
)
async def test_invalid_event_is_refused_naming_the_field_and_nothing_is_stored(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, body: dict[str, Any], named: set[str]
) -> None:
    await add_endpoint(client, tenant, URL)

    status, answer = await publish(client, tenant, body)

    assert status == 400, answer
    error = answer["error"]
    assert error["code"] == "invalid_request"
    assert error["fields"], error
    assert set(error["fields"]) <= named, error["fields"]
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
    assert await conn.fetchval("SELECT count(*) FROM deliveries") == 0


async def test_unknown_lead_id_is_404(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, URL)
    status, answer = await publish(
        client, tenant, {"type": "followup.day3", "lead_id": "lead_missing"}
    )
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_another_tenants_lead_id_is_404(
    client: Client, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    owner, intruder = await make_tenant("owner"), await make_tenant("intruder")
    lead = await post_lead(client, owner, email="ada@example.com")
    await add_endpoint(client, intruder, URL)

    status, answer = await publish(
        client, intruder, {"type": "followup.day3", "lead_id": lead["id"]}
    )

    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert await events_of(conn, intruder.id) == []


async def test_publish_needs_the_ingest_scope(
    client: Client, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    reader = await make_tenant("reader", scopes=("read", "manage"))
    status, answer = await publish(client, reader, {"type": "followup.day3"})
    assert (status, answer["error"]["code"]) == (403, "forbidden")
    assert await conn.fetchval("SELECT count(*) FROM events") == 0


async def test_idempotency_key_replays_the_first_publish(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await add_endpoint(client, tenant, URL)
    body = {"type": "followup.day3", "data": {"n": 1}, "delay": 60}
    first = await client.post(
        "/v1/events", json=body, headers={**tenant.headers, "Idempotency-Key": "followup-1"}
    )
    second = await client.post(
        "/v1/events", json=body, headers={**tenant.headers, "Idempotency-Key": "followup-1"}
    )

    assert (first.status, second.status) == (201, 201)
    assert await second.read() == await first.read()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await conn.fetchval("SELECT count(*) FROM events") == 1
    assert await conn.fetchval("SELECT count(*) FROM deliveries") == 1


async def test_idempotency_key_with_a_different_event_is_422(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {"Idempotency-Key": "followup-1"}
    status, _ = await publish(client, tenant, {"type": "followup.day3"}, **headers)
    assert status == 201
    status, answer = await publish(client, tenant, {"type": "followup.day4"}, **headers)
    assert (status, answer["error"]["code"]) == (422, "idempotency_key_reused")
    assert await conn.fetchval("SELECT count(*) FROM events") == 1


# --- stopping a lead ----------------------------------------------------------------------


async def stop(client: Client, tenant: Tenant, lead_id: str) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"/v1/leads/{lead_id}/stop", headers=tenant.headers)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def states_of(conn: asyncpg.Connection, lead_id: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT event_type, state FROM deliveries WHERE lead_id = $1 ORDER BY event_type, state",
        lead_id,
    )
    return [(r["event_type"], r["state"]) for r in rows]


async def test_stop_cancels_only_that_leads_pending_deliveries(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory()
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    await add_endpoint(client, tenant, receiver.url, event_types=["followup.*"])
    ada = (await post_lead(client, tenant, email="ada@example.com"))["id"]
    bob = (await post_lead(client, tenant, email="bob@example.com"))["id"]
    await receiver.wait_for(2)  # both leads' lead.created, delivered before the stop

    async def created_succeeded() -> bool:
        states = await conn.fetch("SELECT state FROM deliveries")
        return [r["state"] for r in states] == ["succeeded", "succeeded"]

    await wait_until(created_succeeded)
    for lead_id, day in ((ada, "day3"), (ada, "day7"), (bob, "day3")):
        status, _ = await publish(
            client, tenant, {"type": f"followup.{day}", "lead_id": lead_id, "delay": 3600}
        )
        assert status == 201

    assert await stop(client, tenant, ada) == (200, {"cancelled": 2})

    assert await states_of(conn, ada) == [
        ("followup.day3", "cancelled"),
        ("followup.day7", "cancelled"),
        ("lead.created", "succeeded"),
    ]
    assert await states_of(conn, bob) == [
        ("followup.day3", "pending"),
        ("lead.created", "succeeded"),
    ]


async def test_second_stop_cancels_nothing(client: Client, tenant: Tenant) -> None:
    await add_endpoint(client, tenant, URL)
    lead = await post_lead(client, tenant, email="ada@example.com")
    await publish(client, tenant, {"type": "followup.day3", "lead_id": lead["id"], "delay": 60})

    assert await stop(client, tenant, lead["id"]) == (200, {"cancelled": 2})
    assert await stop(client, tenant, lead["id"]) == (200, {"cancelled": 0})


async def test_cancelled_delivery_is_never_sent(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory()
    await add_endpoint(client, tenant, receiver.url, event_types=["followup.*"])
    lead = await post_lead(client, tenant, email="ada@example.com")
    await publish(client, tenant, {"type": "followup.soon", "lead_id": lead["id"], "delay": 0.3})
    await publish(client, tenant, {"type": "followup.marker", "delay": 0.4})
    assert await stop(client, tenant, lead["id"]) == (200, {"cancelled": 1})

    async def marker_succeeded() -> bool:
        state = await conn.fetchval(
            "SELECT state FROM deliveries WHERE event_type = 'followup.marker'"
        )
        return state == "succeeded"

    async with worker_running(settings):
        await wait_until(marker_succeeded)
    assert [got.json()["type"] for got in receiver.received] == ["followup.marker"]
    assert await states_of(conn, lead["id"]) == [("followup.soon", "cancelled")]


async def test_stop_of_an_unknown_lead_is_404(client: Client, tenant: Tenant) -> None:
    status, answer = await stop(client, tenant, "lead_missing")
    assert (status, answer["error"]["code"]) == (404, "not_found")


async def test_stop_of_another_tenants_lead_is_404_and_cancels_nothing(
    client: Client, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    owner, intruder = await make_tenant("owner"), await make_tenant("intruder")
    await add_endpoint(client, owner, URL)
    lead = await post_lead(client, owner, email="ada@example.com")

    status, answer = await stop(client, intruder, lead["id"])

    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert await states_of(conn, lead["id"]) == [("lead.created", "pending")]
