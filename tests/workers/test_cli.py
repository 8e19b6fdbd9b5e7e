"""The operator's commands around delivery: `endpoints add|list`, `replay` and `tail`.

Each command runs its own event loop (`asyncio.run`), so it is invoked in a worker thread while
the test's loop keeps serving the app, the receivers and the workers it checks against.
`tail` is followed in-process through `workers.tail.follow`, with a line limit to end it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.constants import OUTCOMES_CHANNEL
from gateway.crypto import Cipher
from gateway.settings import Settings
from tests.conftest import TEST_SECRET_KEYS, Servers, Tenant
from tests.deliveries import worker_running
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until
from workers.tail import follow

Client = TestClient[Any, Any]

LOOPBACK_URL = "http://127.0.0.1:9/hook"
# Every field of an outcome line the contract names, for logs and `leadgate tail` alike.
OUTCOME_FIELDS = {
    "delivery_id",
    "event_id",
    "endpoint_id",
    "attempt",
    "status",
    "latency_ms",
    "outcome",
    "next_attempt_at",
}


async def leadgate(
    servers: Servers, *args: str, env: dict[str, str | None] | None = None
) -> Result:
    """Run `leadgate ARGS` against the test servers; settings come from `env` alone."""
    environment: dict[str, str | None] = {
        "LEADGATE_DATABASE_URL": servers.database_url,
        "LEADGATE_REDIS_URL": servers.redis_url,
        "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
        "LEADGATE_CONFIG": None,
        **(env or {}),
    }
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=environment)


ALLOW_PRIVATE = {"LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true"}


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def as_api_shows(endpoint: dict[str, Any]) -> dict[str, Any]:
    """An endpoint without its secret, its times parsed, to compare what two views print."""
    shown = {k: v for k, v in endpoint.items() if k != "secret"}
    for name in ("created_at", "updated_at"):
        shown[name] = datetime.fromisoformat(shown[name])
    return shown


async def api_endpoints(client: Client, tenant: Tenant) -> list[dict[str, Any]]:
    response = await client.get("/v1/endpoints", headers=tenant.headers)
    assert response.status == 200
    return [as_api_shows(e) for e in (await response.json())["data"]]


# --- endpoints add | list -----------------------------------------------------------------


async def test_endpoints_add_json_prints_the_endpoint_with_its_secret(
    servers: Servers, client: Client, tenant: Tenant, conn: asyncpg.Connection, cipher: Cipher
) -> None:
    result = await leadgate(
        servers, "endpoints", "add", "--tenant", tenant.id, LOOPBACK_URL,
        "--events", "lead.*,followup.day3", "--description", "CRM", "--json", env=ALLOW_PRIVATE,
    )  # fmt: skip

    printed = json_of(result)
    assert result.stdout == orjson.dumps(printed).decode() + "\n"
    assert printed["id"].startswith("ep_")
    assert (printed["url"], printed["event_types"], printed["description"]) == (
        LOOPBACK_URL,
        ["lead.*", "followup.day3"],
        "CRM",
    )
    assert printed["enabled"] is True
    assert printed["secret"].startswith("whsec_")
    assert len(base64.b64decode(printed["secret"][len("whsec_") :], validate=True)) == 32
    row = await conn.fetchrow("SELECT tenant_id, url, secret FROM endpoints")
    assert (row["tenant_id"], row["url"]) == (tenant.id, LOOPBACK_URL)
    assert cipher.decrypt_text(row["secret"]) == printed["secret"]
    assert await api_endpoints(client, tenant) == [as_api_shows(printed)]


async def test_endpoints_add_refuses_a_loopback_url_unless_private_destinations_are_allowed(
    servers: Servers, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    result = await leadgate(
        servers, "endpoints", "add", "--tenant", tenant.id, LOOPBACK_URL, "--json"
    )

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "url" in result.stderr
    assert "loopback" in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM endpoints") == 0


async def test_endpoints_add_refuses_a_malformed_event_type_naming_event_types(
    servers: Servers, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    result = await leadgate(
        servers, "endpoints", "add", "--tenant", tenant.id, LOOPBACK_URL,
        "--events", "Lead Created", "--json", env=ALLOW_PRIVATE,
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert "event_types" in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM endpoints") == 0


async def test_endpoints_list_json_lists_the_tenants_endpoints_without_secrets(
    servers: Servers, client: Client, tenant: Tenant
) -> None:
    first = await add_endpoint(client, tenant, LOOPBACK_URL, event_types=["lead.*"])
    second = await add_endpoint(client, tenant, LOOPBACK_URL, description="second")

    result = await leadgate(servers, "endpoints", "list", "--tenant", tenant.id, "--json")

    listed = json_of(result)
    assert [e["id"] for e in listed] == [first["id"], second["id"]]
    assert all("secret" not in e for e in listed)
    assert [as_api_shows(e) for e in listed] == await api_endpoints(client, tenant)
    assert first["secret"] not in result.output
    assert second["secret"] not in result.output


# --- replay -------------------------------------------------------------------------------


async def test_replay_resets_an_endpoints_failed_deliveries_to_pending(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    settings: Settings,
    receiver_factory: ReceiverFactory,
    conn: asyncpg.Connection,
) -> None:
    failing = await receiver_factory(statuses=[500])
    replayed = (await add_endpoint(client, tenant, failing.url))["id"]
    other = (await add_endpoint(client, tenant, failing.url))["id"]
    await post_lead(client, tenant, email="ada@example.com")
    await post_lead(client, tenant, email="bob@example.com")

    async def all_failed() -> bool:
        states = await conn.fetch("SELECT state FROM deliveries")
        return [r["state"] for r in states] == ["failed"] * 4

    async with worker_running(settings):
        await wait_until(all_failed)

    result = await leadgate(
        servers, "replay", "--endpoint", replayed, "--since", "2000-01-01T00:00:00",
        "--state", "failed",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "replaying 2 deliveries" in result.output
    rows = await conn.fetch("SELECT endpoint_id, state, tries, attempt_count FROM deliveries")
    attempts = len(settings.retry_schedule)
    assert sorted(tuple(r) for r in rows) == sorted(
        [(replayed, "pending", 0, attempts)] * 2 + [(other, "failed", attempts, attempts)] * 2
    )


async def test_replay_of_an_unknown_endpoint_exits_non_zero(
    servers: Servers, conn: asyncpg.Connection
) -> None:
    result = await leadgate(
        servers, "replay", "--endpoint", "ep_missing", "--since", "2000-01-01T00:00:00"
    )
    assert result.exit_code == 1
    assert "no endpoint ep_missing" in result.output


# --- tail ---------------------------------------------------------------------------------


async def subscribed(redis_url: str) -> None:
    """Wait until someone listens on the outcomes channel, so no outcome is missed."""
    client = aioredis.Redis.from_url(redis_url)
    try:

        async def listening() -> bool:
            [(_, count)] = await client.pubsub_numsub(OUTCOMES_CHANNEL)
            return int(count) > 0

        await wait_until(listening)
    finally:
        await client.aclose()


async def tail_while_delivering(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
    *,
    failing_statuses: list[int],
    limit: int,
    only: str | None = None,
    failed_only: bool = False,
    as_json: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """Follow outcomes while one lead goes to an endpoint answering 200 and a failing one.

    `only` names the endpoint to follow ("ok" or "failing"); returns the lines shown and the
    endpoints' ids by name, once both deliveries have succeeded and the worker is at rest.
    """
    endpoints = {
        "ok": (await add_endpoint(client, tenant, (await receiver_factory()).url))["id"],
        "failing": (
            await add_endpoint(
                client, tenant, (await receiver_factory(statuses=failing_statuses)).url
            )
        )["id"],
    }
    lines: list[str] = []
    task = asyncio.create_task(
        follow(
            servers.redis_url,
            endpoint=endpoints[only] if only else None,
            failed_only=failed_only,
            as_json=as_json,
            out=lines.append,
            limit=limit,
        )
    )

    async def both_succeeded() -> bool:
        states = await conn.fetch("SELECT state FROM deliveries")
        return [r["state"] for r in states] == ["succeeded", "succeeded"]

    try:
        await subscribed(servers.redis_url)
        async with worker_running(settings):
            await post_lead(client, tenant, email="ada@example.com")
            async with asyncio.timeout(10):
                await task
            await wait_until(both_succeeded)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return lines, endpoints


async def test_tail_json_prints_one_line_per_attempt_with_the_contracts_fields(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    lines, endpoints = await tail_while_delivering(
        servers, client, tenant, receiver_factory, settings, conn,
        failing_statuses=[500, 200], limit=3,
    )  # fmt: skip

    outcomes = [orjson.loads(line) for line in lines]
    assert all(set(o) >= OUTCOME_FIELDS for o in outcomes)
    deliveries = {
        r["endpoint_id"]: r
        for r in await conn.fetch("SELECT id, event_id, endpoint_id FROM deliveries")
    }
    seen = sorted((o["endpoint_id"], o["attempt"], o["status"], o["outcome"]) for o in outcomes)
    assert seen == sorted(
        [
            (endpoints["ok"], 1, 200, "succeeded"),
            (endpoints["failing"], 1, 500, "retrying"),
            (endpoints["failing"], 2, 200, "succeeded"),
        ]
    )
    for o in outcomes:
        delivery = deliveries[o["endpoint_id"]]
        assert (o["delivery_id"], o["event_id"]) == (delivery["id"], delivery["event_id"])
        assert isinstance(o["latency_ms"], float) and o["latency_ms"] > 0
        assert (o["next_attempt_at"] is None) == (o["outcome"] == "succeeded")


async def test_tail_failed_shows_only_retrying_and_failed_attempts(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    # The ok endpoint's success goes out with the first failure, before the second failure.
    lines, endpoints = await tail_while_delivering(
        servers, client, tenant, receiver_factory, settings, conn,
        failing_statuses=[500, 500, 200], limit=2, failed_only=True,
    )  # fmt: skip

    outcomes = [orjson.loads(line) for line in lines]
    assert [(o["endpoint_id"], o["attempt"], o["outcome"]) for o in outcomes] == [
        (endpoints["failing"], 1, "retrying"),
        (endpoints["failing"], 2, "retrying"),
    ]


async def test_tail_endpoint_shows_only_that_endpoints_attempts(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    # The failing endpoint's second attempt goes out after the ok endpoint's only one.
    lines, endpoints = await tail_while_delivering(
        servers, client, tenant, receiver_factory, settings, conn,
        failing_statuses=[500, 200], limit=2, only="failing",
    )  # fmt: skip

    outcomes = [orjson.loads(line) for line in lines]
    assert [(o["endpoint_id"], o["attempt"], o["outcome"]) for o in outcomes] == [
        (endpoints["failing"], 1, "retrying"),
        (endpoints["failing"], 2, "succeeded"),
    ]


async def test_tail_human_line_shows_outcome_status_and_delivery_id(
    servers: Servers,
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    settings: Settings,
    conn: asyncpg.Connection,
) -> None:
    lines, endpoints = await tail_while_delivering(
        servers, client, tenant, receiver_factory, settings, conn,
        failing_statuses=[500, 200], limit=3, as_json=False,
    )  # fmt: skip

    ids = {r["endpoint_id"]: r["id"] for r in await conn.fetch("SELECT * FROM deliveries")}
    ok_line = next(line for line in lines if ids[endpoints["ok"]] in line)
    retry_line = next(line for line in lines if " 500 " in line)
    assert "succeeded" in ok_line and " 200 " in ok_line
    assert "retrying" in retry_line and ids[endpoints["failing"]] in retry_line
    assert "lead.created" in retry_line
    assert "next " in retry_line and "http_500" in retry_line
    assert all(not line.startswith("{") for line in lines)
