"""SSRF: webhooks stay off private networks, at registration and again when connecting.

Here private destinations are not allowed (the delivery fixtures allow them). A destination
that turns private after registration, as with DNS rebinding, is made by registering through an
app that allows private addresses, then delivering with a worker that does not; a name that
resolves to loopback is made with a fixed resolver handed to `GuardedResolver`. The whole
rebinding attack runs with a resolver the test switches: the name resolves to a public address
when it is registered (the check passes) and to a private one when the worker sends.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.crypto import Cipher
from gateway.endpoints.models import EndpointIn
from gateway.endpoints.store import add_endpoint as add_endpoint_row
from gateway.settings import Settings
from gateway.ssrf import GuardedResolver, refused_because
from tests.conftest import Tenant
from tests.receivers import Receiver
from tests.workers.conftest import WorkerFactory, add_endpoint, delivery_of, post_lead
from tests.workers.helpers.records import attempts_of, settled
from tests.workers.helpers.state import worker_with
from workers import sender
from workers.sender import post

Client = TestClient[Any, Any]
PUBLIC = "93.184.215.14"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_destinations": False})


class SwitchableResolver(AbstractResolver):
    """A DNS server under an attacker's control: it answers what it is told, for every name."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return await FixedResolver(self.address).resolve(host, port, family)

    async def close(self) -> None:
        pass


class FixedResolver(AbstractResolver):
    """Answers every name with the same addresses, as a DNS server under someone's control."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.addresses
        ]

    async def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.1/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ],
)
async def test_registering_a_refused_destination_is_a_400_naming_url(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, url: str
) -> None:
    response = await client.post("/v1/endpoints", json={"url": url}, headers=tenant.headers)

    body = await response.json()
    assert response.status == 400, body
    assert body["error"]["code"] == "invalid_request"
    assert list(body["error"]["fields"]) == ["url"]
    assert await conn.fetchval("SELECT count(*) FROM endpoints") == 0


async def test_a_public_address_is_accepted_at_registration(client: Client, tenant: Tenant) -> None:
    endpoint = await add_endpoint(client, tenant, f"http://{PUBLIC}/hook")

    assert endpoint["url"] == f"http://{PUBLIC}/hook"


async def test_changing_the_url_to_a_refused_destination_is_a_400_naming_url(
    client: Client, tenant: Tenant
) -> None:
    endpoint = await add_endpoint(client, tenant, f"http://{PUBLIC}/hook")

    response = await client.patch(
        f"/v1/endpoints/{endpoint['id']}",
        json={"url": "http://169.254.169.254/latest/meta-data/"},
        headers=tenant.headers,
    )

    body = await response.json()
    assert response.status == 400, body
    assert list(body["error"]["fields"]) == ["url"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_destination_that_turned_private_is_refused_when_connecting(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    run_worker: WorkerFactory,
    conn: asyncpg.Connection,
    host: str,
) -> None:
    permissive = await aiohttp_client(
        create_app(settings.model_copy(update={"allow_private_destinations": True}))
    )
    await add_endpoint(permissive, tenant, receiver.url.replace("127.0.0.1", host))
    await run_worker(settings.model_copy(update={"retry_schedule": (0.0,)}))
    await post_lead(permissive, tenant, email="rebound@example.com")

    row = await settled(conn, (await delivery_of(conn))["id"])

    assert row["state"] == "failed"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["outcome"], a["error"]) for a in attempts] == [
        (None, "failed", "refused_destination")
    ]
    assert receiver.received == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "fd12:3456::1",
        "169.254.169.254",
        "fe80::1",
        "fec0::1",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "100.64.0.1",
        "192.0.2.1",
        "2001:db8::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:224.0.0.1",
        "64:ff9b::7f00:1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refused_because(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", [PUBLIC, "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refused_because(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_a_refusal_names_the_class_of_address(address: str, reason: str) -> None:
    assert refused_because(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "169.254.169.254"])
async def test_guarded_resolver_refuses_a_name_that_resolves_only_to_refused_addresses(
    address: str,
) -> None:
    resolver = GuardedResolver(FixedResolver(address))

    with pytest.raises(OSError, match="refused destination"):
        await resolver.resolve("hooks.example.com", 443)


async def test_guarded_resolver_drops_refused_addresses_and_keeps_public_ones() -> None:
    resolver = GuardedResolver(FixedResolver("10.0.0.5", PUBLIC, "::ffff:127.0.0.1"))

    results = await resolver.resolve("hooks.example.com", 443)

    assert [(r["hostname"], r["host"], r["port"]) for r in results] == [
        ("hooks.example.com", PUBLIC, 443)
    ]


async def test_guarded_resolver_closes_its_inner_resolver() -> None:
    inner = FixedResolver(PUBLIC)

    await GuardedResolver(inner).close()

    assert inner.closed is True


async def test_an_attempt_to_a_name_rebound_to_loopback_is_refused_and_sends_nothing(
    receiver: Receiver,
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(FixedResolver("127.0.0.1")))
    async with aiohttp.ClientSession(connector=connector) as http:
        attempt = await post(
            http,
            f"http://hooks.example.com:{port}/hook",
            {"Content-Type": "application/json"},
            b"{}",
            timeout=2.0,
            allow_private=False,
        )

    assert (attempt.status, attempt.error) == (None, "refused_destination")
    assert receiver.received == []


@pytest.mark.parametrize("rebound_to", ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1"])
async def test_a_name_that_passed_registration_but_resolves_private_at_send_time_is_refused(
    client: Client,
    settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    conn: asyncpg.Connection,
    cipher: Cipher,
    rebound_to: str,
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    dns = SwitchableResolver(PUBLIC)
    spec = EndpointIn(url=f"http://hooks.example.com:{port}/hook")
    await add_endpoint_row(conn, tenant.id, spec, allow_private=False, cipher=cipher, resolver=dns)
    assert dns.asked == ["hooks.example.com"]  # registration resolved it: public, accepted
    dns.address = rebound_to
    await post_lead(client, tenant, email="rebinding@example.com")
    delivery = await delivery_of(conn)
    http = sender.session(4, allow_private=False, resolver=dns)
    strict = settings.model_copy(update={"retry_schedule": (0.0,)})

    async with worker_with(strict, http):
        await settled(conn, delivery["id"])

    row = await settled(conn, delivery["id"])
    assert row["state"] == "failed"
    attempts = await attempts_of(conn, row["id"])
    assert [(a["status"], a["outcome"], a["error"]) for a in attempts] == [
        (None, "failed", "refused_destination")
    ]
    assert dns.asked[-1] == "hooks.example.com"  # it was resolved again at send time
    assert receiver.received == []
