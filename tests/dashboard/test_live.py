"""The live view's stream: delivery outcomes as server-sent events, the tenant's own only."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.constants import OUTCOMES_CHANNEL
from gateway.dashboard import STREAM_PATH
from tests.conftest import Servers, Tenant, TenantFactory
from tests.dashboard.helpers import sign_in


def outcome(tenant_id: str, delivery_id: str) -> bytes:
    """An outcome as workers publish it (workers/delivery.py `_announce`)."""
    return orjson.dumps({
        "delivery_id": delivery_id, "event_id": "evt_1", "event_type": "lead.created",
        "endpoint_id": "ep_1", "tenant_id": tenant_id, "attempt": 1, "status": 500,
        "latency_ms": 3.2, "outcome": "retrying", "error": "HTTP 500", "next_attempt_at": None,
        "at": "2026-11-21T12:00:00+00:00",
    })  # fmt: skip


async def next_event(stream: ClientResponse) -> dict[str, Any]:
    """The next `outcome` event's data, skipping comments and the retry line."""
    async with asyncio.timeout(10):
        event = None
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: ") and event == "outcome":
                parsed: dict[str, Any] = orjson.loads(line[len("data: ") :])
                return parsed


async def test_the_stream_carries_the_signed_in_tenants_outcomes_and_no_others(
    client: TestClient[Any, Any], tenant: Tenant, make_tenant: TenantFactory, servers: Servers
) -> None:
    other = await make_tenant("other")
    await sign_in(client, tenant.key)
    stream = await client.get(STREAM_PATH, headers={"Sec-Fetch-Site": "same-origin"})
    assert stream.status == 200
    assert stream.content_type == "text/event-stream"
    publisher = aioredis.from_url(servers.redis_url)
    try:
        await publisher.publish(OUTCOMES_CHANNEL, outcome(other.id, "dlv_theirs"))
        await publisher.publish(OUTCOMES_CHANNEL, outcome(tenant.id, "dlv_ours"))
        first = await next_event(stream)
    finally:
        await publisher.aclose()
        stream.close()
    assert first["delivery_id"] == "dlv_ours"
    assert first["status"] == 500


async def test_the_stream_takes_an_api_key_too(
    client: TestClient[Any, Any], tenant: Tenant, servers: Servers
) -> None:
    stream = await client.get(STREAM_PATH, headers=tenant.headers)
    publisher = aioredis.from_url(servers.redis_url)
    try:
        await publisher.publish(OUTCOMES_CHANNEL, outcome(tenant.id, "dlv_1"))
        assert (await next_event(stream))["delivery_id"] == "dlv_1"
    finally:
        await publisher.aclose()
        stream.close()


async def test_the_stream_needs_a_session_or_key(client: TestClient[Any, Any]) -> None:
    response = await client.get(STREAM_PATH)
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
