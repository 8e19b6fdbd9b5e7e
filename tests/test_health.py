"""Liveness, readiness and request ids."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient


async def test_healthz_answers_ok(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_answers_ready_when_postgres_and_redis_reachable(
    client: TestClient[Any, Any],
) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready"}


async def test_every_response_carries_a_request_id(client: TestClient[Any, Any]) -> None:
    response = await client.get("/no/such/route")
    assert response.status == 404
    body = await response.json()
    assert response.headers["X-Request-Id"] == body["error"]["request_id"]


async def test_client_request_id_is_echoed(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "req-abc.123"})
    assert response.headers["X-Request-Id"] == "req-abc.123"


async def test_unsafe_client_request_id_is_replaced(client: TestClient[Any, Any]) -> None:
    response = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})
    assert response.headers["X-Request-Id"] != "bad id\twith spaces"
    assert len(response.headers["X-Request-Id"]) == 32


async def test_readyz_fails_with_503_when_redis_is_unreachable(
    aiohttp_client: Any, settings: Any, conn: Any
) -> None:
    from gateway.app import create_app
    from gateway.embedded import free_port

    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    client = await aiohttp_client(create_app(dead))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "unavailable"
    assert "redis" in body["error"]["message"]
