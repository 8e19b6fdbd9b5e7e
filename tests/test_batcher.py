"""Group commit: requests that arrive together share one transaction, each answered as its own.

The gateway here waits long enough (batch_max_wait) for every request a test sends at once to
land in one batch; that they did is visible in the leads they made, which carry their batch's
commit time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import Tenant, events_of

Client = TestClient[Any, Any]


@pytest.fixture
async def batching(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    conn: asyncpg.Connection,
) -> Client:
    wide = settings.model_copy(
        update={"batch_max_wait": 0.3, "batch_max_items": 1000, "batch_concurrency": 1}
    )
    return await aiohttp_client(create_app(wide))


async def post_all(
    client: Client, tenant: Tenant, bodies: list[dict[str, Any]], **headers: str
) -> list[tuple[int, dict[str, Any]]]:
    async def one(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = await client.post(
            "/v1/postback", json=body, headers={**tenant.headers, **headers}
        )
        return response.status, await response.json()

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def waiting_on_a_lock(conn: asyncpg.Connection, timeout: float = 10.0) -> None:
    query = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    async with asyncio.timeout(timeout):
        while not await conn.fetchval(query):
            await asyncio.sleep(0.02)


async def test_postbacks_sent_together_commit_in_one_batch(
    batching: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    answers = await post_all(batching, tenant, [{"email": f"p{i}@example.com"} for i in range(20)])

    assert [status for status, _ in answers] == [201] * 20
    times = await conn.fetch(
        "SELECT DISTINCT created_at FROM leads WHERE tenant_id = $1", tenant.id
    )
    assert len(times) == 1
    assert len(await events_of(conn, tenant.id)) == 20


async def test_same_new_email_twice_in_one_batch_makes_one_lead_in_arrival_order(
    batching: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    answers = await post_all(
        batching,
        tenant,
        [
            {"email": "Same@Example.com", "first_name": "Ada"},
            {"email": "other@example.com"},
            {"email": "same@example.com", "last_name": "Lovelace", "stage": "qualified"},
        ],
    )

    (first, created), _, (second, matched) = answers
    assert (first, created["created"]) == (201, True)
    assert (second, matched["created"]) == (200, False)
    assert matched["data"]["id"] == created["data"]["id"]
    # The second sees the first's fields: it was applied after it.
    assert (matched["data"]["first_name"], matched["data"]["last_name"]) == ("Ada", "Lovelace")
    assert created["data"]["last_name"] is None
    events = [
        e["type"] for e in await events_of(conn, tenant.id) if e["lead_id"] == created["data"]["id"]
    ]
    assert events == ["lead.created", "lead.updated", "lead.stage_changed"]
    history = await conn.fetch(
        "SELECT from_stage, to_stage FROM stage_history WHERE lead_id = $1 ORDER BY id",
        created["data"]["id"],
    )
    assert [tuple(r) for r in history] == [(None, "new"), ("new", "qualified")]


async def test_a_conflicting_postback_gets_its_409_and_the_batch_commits(
    client: Client, batching: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await client.post("/v1/postback", json={"email": "taken@example.com"}, headers=tenant.headers)
    await client.post("/v1/postback", json={"external_id": "crm-1"}, headers=tenant.headers)

    answers = await post_all(
        batching,
        tenant,
        [
            {"email": "a@example.com"},
            {"external_id": "crm-1", "email": "taken@example.com"},  # another lead's email
            {"email": "b@example.com"},
        ],
    )

    assert [status for status, _ in answers] == [201, 409, 201]
    assert answers[1][1]["error"]["fields"] == {"email": "already used by another lead"}
    assert await conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant.id) == 4


async def test_an_unknown_lead_id_is_404_for_that_postback_alone(
    batching: Client, tenant: Tenant
) -> None:
    answers = await post_all(
        batching, tenant, [{"lead_id": "lead_nope"}, {"email": "fine@example.com"}]
    )

    assert [status for status, _ in answers] == [404, 201]


async def test_one_idempotency_key_twice_in_one_batch_runs_once(
    batching: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    body = {"email": "once@example.com"}
    answers = await post_all(batching, tenant, [body, body], **{"Idempotency-Key": "k-batch"})

    assert sorted(status for status, _ in answers) == [201, 409]
    assert len(await events_of(conn, tenant.id)) == 1
    again = await batching.post(
        "/v1/postback", json=body, headers={**tenant.headers, "Idempotency-Key": "k-batch"}
    )
    assert (again.status, again.headers["Idempotent-Replayed"]) == (201, "true")


async def test_a_batch_that_fails_in_postgres_is_applied_again_request_by_request(
    batching: Client, tenant: Tenant, conn: asyncpg.Connection, servers: Any
) -> None:
    # Another writer inserts a lead with one of the batch's emails and has not committed yet:
    # the batch does not see it, and its insert then fails the unique index as a whole.
    other = await asyncpg.connect(servers.database_url)
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(
            "INSERT INTO leads (id, tenant_id, email, stage) VALUES ('lead_x', $1, $2, 'new')",
            tenant.id,
            "raced@example.com",
        )
        sending = asyncio.create_task(
            post_all(
                batching,
                tenant,
                [{"email": "first@example.com"}, {"email": "raced@example.com", "company": "R"}],
            )
        )
        await waiting_on_a_lock(conn)
        await tx.commit()
        answers = await sending
    finally:
        await other.close()

    assert [status for status, _ in answers] == [201, 200]
    assert answers[1][1]["data"]["id"] == "lead_x"
    assert answers[1][1]["data"]["company"] == "R"
