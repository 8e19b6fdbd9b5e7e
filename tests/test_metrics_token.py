"""LEADGATE_METRICS_TOKEN: /metrics of the gateway and of a real worker answer only the token;
unset, both stay open."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from gateway.app import create_app
from gateway.embedded import free_port
from gateway.settings import Settings
from workers.main import running_in_loop

Client = TestClient[Any, Any]
TOKEN = "scrape-token-5f1c9e"


@pytest.mark.parametrize(
    ("authorization", "status"),
    [(None, 401), ("Bearer wrong-token", 401), (f"Basic {TOKEN}", 401), (f"Bearer {TOKEN}", 200)],
)
async def test_gateway_metrics_need_the_token_when_one_is_set(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    conn: asyncpg.Connection,
    authorization: str | None,
    status: int,
) -> None:
    client = await aiohttp_client(
        create_app(settings.model_copy(update={"metrics_token": SecretStr(TOKEN)}))
    )
    headers = {"Authorization": authorization} if authorization else {}

    response = await client.get("/metrics", headers=headers)

    assert response.status == status
    if status == 401:
        body = await response.json()
        assert body["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in await response.text()
    else:
        assert "leadgate_http_requests_total" in await response.text()


async def test_gateway_metrics_are_open_without_a_token(client: Client) -> None:
    response = await client.get("/metrics")

    assert response.status == 200


async def first_answer(http: aiohttp.ClientSession, url: str) -> int:
    """The status of `url` once the worker's start-up has opened its port."""
    async with asyncio.timeout(15):
        while True:
            try:
                async with http.get(url) as response:
                    return response.status
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_worker_metrics_need_the_token_when_one_is_set(
    settings: Settings, conn: asyncpg.Connection, token: str | None
) -> None:
    port = free_port()
    secret = SecretStr(token) if token else None
    worker = settings.model_copy(update={"worker_metrics_port": port, "metrics_token": secret})
    url = f"http://127.0.0.1:{port}/metrics"
    async with running_in_loop(worker), aiohttp.ClientSession() as http:
        anonymous = await first_answer(http, url)
        assert anonymous == (401 if token else 200)
        async with http.get(url, headers={"Authorization": f"Bearer {TOKEN}"}) as bearer:
            assert bearer.status == 200
            assert "leadgate_delivery_attempts_total" in await bearer.text()
