"""LEADGATE_EGRESS_PROXY: every delivery goes through a real local forward proxy that records
what it relayed (plain HTTP as an absolute-URI request, HTTPS through CONNECT), and the SSRF
guard still checks the destination, which the proxy would resolve on its own.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import Servers, Tenant
from tests.forward_proxy import ForwardProxy
from tests.receivers import Receiver
from tests.workers.conftest import WorkerFactory, add_endpoint, delivery_of, post_lead
from tests.workers.helpers.processes import WorkerProcess
from tests.workers.helpers.records import attempts_of, settled
from tests.workers.helpers.state import worker_with
from tests.workers.test_ssrf import PUBLIC, SwitchableResolver
from workers import sender

Client = TestClient[Any, Any]


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    running = await ForwardProxy().start()
    yield running
    await running.stop()


async def test_a_delivery_goes_through_the_proxy_which_relays_it_as_sent(
    client: Client,
    tenant: Tenant,
    receiver: Receiver,
    run_worker: WorkerFactory,
    settings: Settings,
    proxy: ForwardProxy,
    conn: asyncpg.Connection,
) -> None:
    await run_worker(settings.model_copy(update={"egress_proxy": proxy.url}))
    endpoint = await add_endpoint(client, tenant, receiver.url)
    await post_lead(client, tenant, email="proxied@example.com")

    (got,) = await receiver.wait_for(1)

    (relayed,) = proxy.relayed
    assert (relayed.method, relayed.target) == ("POST", receiver.url)
    assert relayed.body == got.body
    assert relayed.headers["webhook-signature"] == got.headers["webhook-signature"]
    Webhook(endpoint["secret"]).verify(got.body, got.headers)
    row = await settled(conn, (await delivery_of(conn))["id"])
    assert row["state"] == "succeeded"


async def test_through_the_proxy_a_destination_resolving_private_is_refused_unrelayed(
    client: Client,
    tenant: Tenant,
    settings: Settings,
    proxy: ForwardProxy,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, "http://hooks.example.com:8443/hook")
    await post_lead(client, tenant, email="proxied-private@example.com")
    delivery = await delivery_of(conn)
    dns = SwitchableResolver("10.1.2.3")
    http = sender.session(4, allow_private=False, proxy=proxy.url, resolver=dns)
    strict = settings.model_copy(
        update={"retry_schedule": (0.0,), "allow_private_destinations": False}
    )

    async with worker_with(strict, http):
        await settled(conn, delivery["id"])

    attempts = await attempts_of(conn, delivery["id"])
    assert [(a["outcome"], a["error"]) for a in attempts] == [("failed", "refused_destination")]
    assert dns.asked == ["hooks.example.com"]
    assert proxy.relayed == []


async def test_through_the_proxy_a_public_destination_is_handed_to_the_proxy(
    client: Client,
    tenant: Tenant,
    settings: Settings,
    proxy: ForwardProxy,
    conn: asyncpg.Connection,
) -> None:
    await add_endpoint(client, tenant, "http://hooks.example.com:8443/hook")
    await post_lead(client, tenant, email="proxied-public@example.com")
    delivery = await delivery_of(conn)
    http = sender.session(
        4, allow_private=False, proxy=proxy.url, resolver=SwitchableResolver(PUBLIC)
    )
    strict = settings.model_copy(
        update={"retry_schedule": (0.0,), "allow_private_destinations": False}
    )

    async with worker_with(strict, http):
        await settled(conn, delivery["id"])

    # The proxy was asked for it (it cannot reach the name here, so the attempt fails).
    assert [(r.method, r.target) for r in proxy.relayed] == [
        ("POST", "http://hooks.example.com:8443/hook")
    ]
    (attempt,) = await attempts_of(conn, delivery["id"])
    assert attempt["error"] != "refused_destination"


@pytest.fixture
async def tls_receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, Path]]:
    """An HTTPS receiver for `localhost`, and the file of the CA that signed its certificate."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"https://localhost:{port}/hook"
    yield receiver, ca_file
    await runner.cleanup()


@pytest.mark.slow
async def test_an_https_delivery_goes_through_a_connect_tunnel(
    aiohttp_client: Any,
    settings: Settings,
    tenant: Tenant,
    servers: Servers,
    tls_receiver: tuple[Receiver, Path],
    proxy: ForwardProxy,
    conn: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    receiver, ca_file = tls_receiver
    client = await aiohttp_client(create_app(settings))
    endpoint = await add_endpoint(client, tenant, receiver.url)
    worker = WorkerProcess.start(
        servers.database_url, servers.redis_url, tmp_path / "worker.log",
        LEADGATE_EGRESS_PROXY=proxy.url, SSL_CERT_FILE=str(ca_file),
    )  # fmt: skip
    try:
        await worker.started()
        await post_lead(client, tenant, email="tunnelled@example.com")
        (got,) = await receiver.wait_for(1, timeout=20)
    finally:
        worker.stop()

    assert [(r.method, r.target) for r in proxy.relayed] == [
        ("CONNECT", receiver.url.removeprefix("https://").removesuffix("/hook"))
    ]
    Webhook(endpoint["secret"]).verify(got.body, got.headers)
