"""Retries: the schedule, what counts as a failure, Retry-After, 410 Gone, and what is recorded.

Every test runs a real worker against real local receivers; retry delays are fractions of a
second, set through settings.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.embedded import free_port
from gateway.logs import configure_logging
from gateway.settings import Settings
from tests.conftest import Tenant
from tests.receivers import Received, Receiver
from tests.workers.conftest import (
    ReceiverFactory,
    WorkerFactory,
    add_endpoint,
    delivery_of,
    post_lead,
)
from tests.workers.helpers.api import get_endpoint, publish
from tests.workers.helpers.records import attempts_of, delivery_of_event, settled

Client = TestClient[Any, Any]


async def first_delivery(conn: asyncpg.Connection) -> Any:
    """The lead.created delivery once it has settled."""
    row = await delivery_of(conn)
    assert row is not None
    return await settled(conn, row["id"])


async def test_delivery_ends_failed_after_the_last_attempt_of_the_schedule(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    receiver = await receiver_factory(statuses=[500])
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="never@example.com")

    row = await first_delivery(conn)

    schedule = len(settings.retry_schedule)
    assert row["state"] == "failed"
    assert row["attempt_count"] == schedule
    assert row["last_status"] == 500
    attempts = await attempts_of(conn, row["id"])
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (n, 500, "retrying") for n in range(1, schedule)
    ] + [(schedule, 500, "failed")]
    assert len(receiver.received) == schedule


async def test_timeout_is_recorded_as_timeout_and_retried(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    await run_worker(
        settings.model_copy(update={"delivery_timeout": 0.5, "retry_schedule": (0.0, 0.2)})
    )
    receiver = await receiver_factory(delay=1.0)
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="slow@example.com")

    row = await first_delivery(conn)

    assert row["state"] == "failed"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["attempt"], a["status"], a["outcome"], a["error"]) for a in attempts] == [
        (1, None, "retrying", "timeout"),
        (2, None, "failed", "timeout"),
    ]
    assert all(450 <= a["latency_ms"] < 1000 for a in attempts)
    assert len(receiver.received) == 2


async def test_connection_refused_is_recorded_as_connection_error_and_retried(
    client: Client,
    tenant: Tenant,
    run_worker: WorkerFactory,
    conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    await run_worker(settings.model_copy(update={"retry_schedule": (0.0, 0.2)}))
    await add_endpoint(client, tenant, f"http://127.0.0.1:{free_port()}/hook")
    await post_lead(client, tenant, email="closed@example.com")

    row = await first_delivery(conn)

    assert row["state"] == "failed"
    assert row["last_error"] == "connection_error"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["attempt"], a["status"], a["outcome"], a["error"]) for a in attempts] == [
        (1, None, "retrying", "connection_error"),
        (2, None, "failed", "connection_error"),
    ]


async def test_redirect_is_not_followed_and_is_retried(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    elsewhere = await receiver_factory()
    receiver = await receiver_factory(statuses=[302, 200], headers={"Location": elsewhere.url})
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="moved@example.com")

    row = await first_delivery(conn)

    assert row["state"] == "succeeded"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["attempt"], a["status"], a["outcome"], a["error"]) for a in attempts] == [
        (1, 302, "retrying", "http_302"),
        (2, 200, "succeeded", None),
    ]
    assert len(receiver.received) == 2
    assert elsewhere.received == []


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
    status: int,
) -> None:
    receiver = await receiver_factory(statuses=[status, 200], headers={"Retry-After": "2"})
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="busy@example.com")

    first, second = await receiver.wait_for(2, timeout=8)

    assert 2.0 <= second.at - first.at < 4.0
    row = await first_delivery(conn)
    assert row["state"] == "succeeded"
    assert row["attempt_count"] == 2


async def test_retry_after_above_the_cap_is_capped(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    run_worker: WorkerFactory,
    conn: asyncpg.Connection,
    settings: Settings,
) -> None:
    await run_worker(settings.model_copy(update={"retry_after_cap": 1.0}))
    receiver = await receiver_factory(statuses=[429, 200], headers={"Retry-After": "3600"})
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="capped@example.com")

    first, second = await receiver.wait_for(2, timeout=8)

    assert 1.0 <= second.at - first.at < 3.0
    row = await first_delivery(conn)
    assert row["state"] == "succeeded"


async def test_410_gone_disables_the_endpoint_and_ends_the_delivery(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[410])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="gone@example.com")

    row = await first_delivery(conn)

    assert row["state"] == "failed"
    assert row["attempt_count"] == 1
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["outcome"]) for a in attempts] == [(410, "failed")]
    shown = await get_endpoint(client, tenant, endpoint["id"])
    assert shown["enabled"] is False
    assert "410" in shown["disabled_reason"]
    assert len(receiver.received) == 1


async def test_410_gone_fails_the_endpoints_other_pending_deliveries(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[410])
    await add_endpoint(client, tenant, receiver.url)
    follow_up = await publish(client, tenant, type="followup.day3", delay=30)
    waiting = await delivery_of_event(conn, follow_up["id"])
    assert waiting["state"] == "pending"

    await post_lead(client, tenant, email="gone@example.com")
    await first_delivery(conn)

    row = await settled(conn, waiting["id"])
    assert row["state"] == "failed"
    assert row["attempt_count"] == 0
    assert "410" in row["last_error"]
    assert follow_up["id"] not in receiver.ids()
    assert len(receiver.received) == 1


async def test_every_attempt_keeps_the_first_kilobyte_of_the_response(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    text = "".join(f"{i:05d}|" for i in range(1000))  # 6000 characters, each position distinct
    receiver = await receiver_factory()

    async def answer(_: Received) -> web.StreamResponse:
        return web.Response(status=500 if len(receiver.received) == 1 else 200, text=text)

    receiver.reply = answer
    await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="long@example.com")

    row = await first_delivery(conn)

    assert row["state"] == "succeeded"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["response_body"]) for a in attempts] == [
        (500, text[:1024]),
        (200, text[:1024]),
    ]


async def test_every_attempt_logs_the_contract_line(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Configured from inside the test, where stdout is captured; not cached, so that no logger
    # keeps writing to this test's capture once it is over.
    configure_logging("json", "info")
    structlog.configure(cache_logger_on_first_use=False)
    try:
        receiver = await receiver_factory(statuses=[500, 200])
        endpoint = await add_endpoint(client, tenant, receiver.url)
        await post_lead(client, tenant, email="logged@example.com")
        row = await first_delivery(conn)
        # A worker records an attempt before it logs it: wait for the second line too.
        out = ""
        async with asyncio.timeout(10):
            while out.count("delivery_attempt") < 2:
                out += capfd.readouterr().out
                await asyncio.sleep(0.05)
    finally:
        structlog.reset_defaults()

    lines = [orjson.loads(line) for line in out.splitlines() if '"delivery_attempt"' in line]
    first, second = [line for line in lines if line.get("event") == "delivery_attempt"]
    attempts = await attempts_of(conn, row["id"])
    for line, attempt in zip((first, second), attempts, strict=True):
        assert line["delivery_id"] == row["id"]
        assert line["event_id"] == row["event_id"]
        assert line["endpoint_id"] == endpoint["id"]
        assert line["latency_ms"] == attempt["latency_ms"]
    assert (first["attempt"], first["status"], first["outcome"]) == (1, 500, "retrying")
    assert (second["attempt"], second["status"], second["outcome"]) == (2, 200, "succeeded")
    assert second["next_attempt_at"] is None
    next_attempt_at = datetime.fromisoformat(first["next_attempt_at"])
    assert attempts[0]["started_at"] < next_attempt_at <= attempts[1]["started_at"]


async def test_stop_cancels_a_scheduled_follow_up(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, receiver.url, event_types=["followup.*"])
    lead = await post_lead(client, tenant, email="stop@example.com")
    follow_up = await publish(client, tenant, type="followup.day3", lead_id=lead["id"], delay=30)
    assert follow_up["deliveries"] == 1
    row = await delivery_of_event(conn, follow_up["id"])
    assert row["state"] == "pending"
    assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=25)

    response = await client.post(f"/v1/leads/{lead['id']}/stop", headers=tenant.headers)
    assert response.status == 200
    assert await response.json() == {"cancelled": 1}
    assert (await delivery_of_event(conn, follow_up["id"]))["state"] == "cancelled"

    # As if its 30 s had passed. A later follow-up arrives; the
    # cancelled one, due before it, must not have come with it.
    await conn.execute("UPDATE deliveries SET next_attempt_at = now() WHERE id = $1", row["id"])
    later = await publish(client, tenant, type="followup.day4", delay=0.3)
    await settled(conn, (await delivery_of_event(conn, later["id"]))["id"])
    assert receiver.ids() == [later["id"]]
    row = await delivery_of_event(conn, follow_up["id"])
    assert (row["state"], row["attempt_count"]) == ("cancelled", 0)


async def test_scheduled_event_arrives_after_its_delay_and_not_before(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    worker: None,
) -> None:
    await add_endpoint(client, tenant, receiver.url, event_types=["followup.*"])
    published_at = asyncio.get_running_loop().time()
    event = await publish(client, tenant, type="followup.day1", delay=1)

    (got,) = await receiver.wait_for(1, timeout=5)

    assert got.headers["webhook-id"] == event["id"]
    assert 1.0 <= got.at - published_at < 3.0
