"""The deliveries API: list with filters, attempts on record, retry, endpoint replay, lead view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.settings import Settings
from tests import deliveries
from tests.conftest import Tenant, TenantFactory
from tests.deliveries import worker_running
from tests.receivers import Received
from tests.workers import conftest as delivery_fixtures
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until

Client = TestClient[Any, Any]

# The delivery fixtures of tests/workers (fast retries, private destinations allowed, local
# receivers) and a real worker, taken by name: tests here run on the same set-up.
settings = delivery_fixtures.settings
receiver_factory = delivery_fixtures.receiver_factory
worker = deliveries.worker

URL = "http://127.0.0.1:9/hook"


async def state_of(conn: asyncpg.Connection, delivery_id: str) -> str:
    state: str = await conn.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery_id)
    return state


async def wait_for_state(conn: asyncpg.Connection, delivery_id: str, state: str) -> None:
    async def reached() -> bool:
        return await state_of(conn, delivery_id) == state

    await wait_until(reached)


async def delivery_id_of(conn: asyncpg.Connection, endpoint_id: str, lead_id: str) -> str:
    found: str = await conn.fetchval(
        "SELECT id FROM deliveries WHERE endpoint_id = $1 AND lead_id = $2"
        " AND event_type = 'lead.created'",
        endpoint_id,
        lead_id,
    )
    return found


async def get_json(client: Client, tenant: Tenant, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params, headers=tenant.headers)
    assert response.status == 200, await response.text()
    return await response.json()


# --- listing ------------------------------------------------------------------------------

Key = tuple[str, str, str]  # (endpoint, lead, event type) by the scene's names


@dataclass(frozen=True)
class Scene:
    """Endpoints A (`*`) and B (`lead.created`); leads L1 and L2 (stopped); a follow-up of L1."""

    endpoints: dict[str, str]
    leads: dict[str, str]
    deliveries: dict[Key, str]


@pytest.fixture
async def scene(client: Client, tenant: Tenant, conn: asyncpg.Connection) -> Scene:
    endpoints = {
        "A": (await add_endpoint(client, tenant, URL, event_types=["*"]))["id"],
        "B": (await add_endpoint(client, tenant, URL, event_types=["lead.created"]))["id"],
    }
    leads = {
        "L1": (await post_lead(client, tenant, email="one@example.com"))["id"],
        "L2": (await post_lead(client, tenant, email="two@example.com"))["id"],
    }
    published = await client.post(
        "/v1/events",
        json={"type": "followup.day3", "lead_id": leads["L1"], "delay": 3600},
        headers=tenant.headers,
    )
    assert published.status == 201, await published.text()
    stopped = await client.post(f"/v1/leads/{leads['L2']}/stop", headers=tenant.headers)
    assert await stopped.json() == {"cancelled": 2}
    names = {v: k for k, v in (endpoints | leads).items()}
    rows = await conn.fetch("SELECT id, endpoint_id, lead_id, event_type FROM deliveries")
    deliveries = {
        (names[r["endpoint_id"]], names[r["lead_id"]], r["event_type"]): r["id"] for r in rows
    }
    assert sorted(deliveries) == [
        ("A", "L1", "followup.day3"),
        ("A", "L1", "lead.created"),
        ("A", "L2", "lead.created"),
        ("B", "L1", "lead.created"),
        ("B", "L2", "lead.created"),
    ]
    return Scene(endpoints, leads, deliveries)


Filter = Callable[[Scene], dict[str, str]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            lambda s: {"endpoint_id": s.endpoints["A"]},
            {
                ("A", "L1", "lead.created"),
                ("A", "L2", "lead.created"),
                ("A", "L1", "followup.day3"),
            },
        ),
        (
            lambda s: {"lead_id": s.leads["L1"]},
            {
                ("A", "L1", "lead.created"),
                ("B", "L1", "lead.created"),
                ("A", "L1", "followup.day3"),
            },
        ),
        (lambda s: {"event_type": "followup.day3"}, {("A", "L1", "followup.day3")}),
        (
            lambda s: {"state": "cancelled"},
            {("A", "L2", "lead.created"), ("B", "L2", "lead.created")},
        ),
        (
            lambda s: {"state": "pending"},
            {
                ("A", "L1", "lead.created"),
                ("B", "L1", "lead.created"),
                ("A", "L1", "followup.day3"),
            },
        ),
        (
            lambda s: {"endpoint_id": s.endpoints["B"], "state": "pending"},
            {("B", "L1", "lead.created")},
        ),
        (lambda s: {"event_type": "lead.deleted"}, set()),
    ],
    ids=["endpoint", "lead", "event-type", "cancelled", "pending", "endpoint-and-state", "none"],
)
async def test_list_filters_deliveries_and_counts_the_total(
    client: Client, tenant: Tenant, scene: Scene, query: Filter, expected: set[Key]
) -> None:
    page = await get_json(client, tenant, "/v1/deliveries", **query(scene))
    assert sorted(d["id"] for d in page["data"]) == sorted(scene.deliveries[k] for k in expected)
    assert (page["total"], page["limit"], page["offset"]) == (len(expected), 50, 0)


async def test_list_pages_with_limit_and_offset_newest_first(
    client: Client, tenant: Tenant, scene: Scene
) -> None:
    everything = await get_json(client, tenant, "/v1/deliveries", limit=100)
    pages = [
        await get_json(client, tenant, "/v1/deliveries", limit=2, offset=offset)
        for offset in (0, 2, 4)
    ]

    assert [len(p["data"]) for p in pages] == [2, 2, 1]
    assert [(p["total"], p["limit"], p["offset"]) for p in pages] == [
        (5, 2, 0),
        (5, 2, 2),
        (5, 2, 4),
    ]
    assert [d for p in pages for d in p["data"]] == everything["data"]
    created = [d["created_at"] for d in everything["data"]]
    assert created == sorted(created, reverse=True)
    assert sorted(d["id"] for d in everything["data"]) == sorted(scene.deliveries.values())


async def test_list_shows_a_delivery_with_its_state_fields(
    client: Client, tenant: Tenant, scene: Scene
) -> None:
    page = await get_json(client, tenant, "/v1/deliveries", event_type="followup.day3")
    (delivery,) = page["data"]
    assert {k: delivery[k] for k in ("endpoint_id", "lead_id", "event_type", "state")} == {
        "endpoint_id": scene.endpoints["A"],
        "lead_id": scene.leads["L1"],
        "event_type": "followup.day3",
        "state": "pending",
    }
    assert (delivery["attempt_count"], delivery["last_status"], delivery["last_error"]) == (
        0,
        None,
        None,
    )
    assert delivery["event_id"].startswith("evt_")
    due = datetime.fromisoformat(delivery["next_attempt_at"])
    assert abs(due - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(seconds=30)


async def test_list_shows_no_other_tenants_deliveries(
    client: Client, make_tenant: TenantFactory, scene: Scene
) -> None:
    other = await make_tenant("other")
    page = await get_json(client, other, "/v1/deliveries")
    assert (page["data"], page["total"]) == ([], 0)
    by_id = await get_json(client, other, "/v1/deliveries", endpoint_id=scene.endpoints["A"])
    assert (by_id["data"], by_id["total"]) == ([], 0)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"state": "lost"}, "state"), ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"),
     ({"offset": "-1"}, "offset"), ({"colour": "red"}, "colour")],
    ids=["state", "limit-low", "limit-high", "offset", "unknown"],
)  # fmt: skip
async def test_list_refuses_bad_filters_naming_them(
    client: Client, tenant: Tenant, params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/deliveries", params=params, headers=tenant.headers)
    assert response.status == 400
    assert list((await response.json())["error"]["fields"]) == [field]


# --- one delivery and its attempts --------------------------------------------------------


async def test_get_delivery_lists_every_attempt(
    client: Client,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    receiver = await receiver_factory(statuses=[500, 200])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    lead = await post_lead(client, tenant, email="ada@example.com")
    delivery_id = await delivery_id_of(conn, endpoint["id"], lead["id"])
    await wait_for_state(conn, delivery_id, "succeeded")

    detail = (await get_json(client, tenant, f"/v1/deliveries/{delivery_id}"))["data"]

    assert (detail["id"], detail["state"], detail["attempt_count"]) == (delivery_id, "succeeded", 2)
    assert (detail["last_status"], detail["last_error"], detail["next_attempt_at"]) == (
        200,
        None,
        None,
    )
    attempts = detail["attempts"]
    assert [
        (a["attempt"], a["status"], a["outcome"], a["error"], a["response_body"]) for a in attempts
    ] == [
        (1, 500, "retrying", "http_500", "status 500"),
        (2, 200, "succeeded", None, "status 200"),
    ]
    # A number of milliseconds; JavaScript-stable JSON writes a whole one without a fraction.
    assert all(type(a["latency_ms"]) in (int, float) and a["latency_ms"] > 0 for a in attempts)
    assert attempts[0]["started_at"] < attempts[1]["started_at"]


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "/retry")])
async def test_another_tenants_delivery_is_404(
    client: Client,
    make_tenant: TenantFactory,
    conn: asyncpg.Connection,
    method: str,
    suffix: str,
) -> None:
    owner, intruder = await make_tenant("owner"), await make_tenant("intruder")
    endpoint = await add_endpoint(client, owner, URL)
    lead = await post_lead(client, owner, email="ada@example.com")
    delivery_id = await delivery_id_of(conn, endpoint["id"], lead["id"])
    before = dict(await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id))

    response = await client.request(
        method, f"/v1/deliveries/{delivery_id}{suffix}", headers=intruder.headers
    )

    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    after = dict(await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id))
    assert after == before


async def test_unknown_delivery_is_404(client: Client, tenant: Tenant) -> None:
    response = await client.get("/v1/deliveries/dlv_missing", headers=tenant.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


# --- retry --------------------------------------------------------------------------------


async def test_retry_gives_a_failed_delivery_a_fresh_schedule_and_delivers_it(
    client: Client,
    tenant: Tenant,
    settings: Settings,
    receiver_factory: ReceiverFactory,
    conn: asyncpg.Connection,
) -> None:
    attempts = len(settings.retry_schedule)
    # A whole schedule of failures; after the retry, all but the last attempt of a second one.
    receiver = await receiver_factory(statuses=[500] * (2 * attempts - 1) + [200])
    endpoint = await add_endpoint(client, tenant, receiver.url)
    lead = await post_lead(client, tenant, email="ada@example.com")
    delivery_id = await delivery_id_of(conn, endpoint["id"], lead["id"])
    async with worker_running(settings):
        await wait_for_state(conn, delivery_id, "failed")

    response = await client.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.headers)

    assert response.status == 200, await response.text()
    retried = (await response.json())["data"]
    assert (retried["state"], retried["attempt_count"], retried["last_error"]) == (
        "pending",
        attempts,
        None,
    )
    assert len(retried["attempts"]) == attempts
    due = datetime.fromisoformat(retried["next_attempt_at"])
    assert abs(due - datetime.now(UTC)) < timedelta(seconds=5)
    assert await conn.fetchval("SELECT tries FROM deliveries WHERE id = $1", delivery_id) == 0

    async with worker_running(settings):
        await wait_for_state(conn, delivery_id, "succeeded")
    assert len(receiver.received) == 2 * attempts
    assert set(receiver.ids()) == {retried["event_id"]}
    row = await conn.fetchrow("SELECT attempt_count, last_status FROM deliveries")
    assert tuple(row) == (2 * attempts, 200)


async def test_retry_of_a_pending_delivery_is_409(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    endpoint = await add_endpoint(client, tenant, URL)
    lead = await post_lead(client, tenant, email="ada@example.com")
    delivery_id = await delivery_id_of(conn, endpoint["id"], lead["id"])
    before = dict(await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id))

    response = await client.post(f"/v1/deliveries/{delivery_id}/retry", headers=tenant.headers)

    assert response.status == 409
    assert (await response.json())["error"]["code"] == "conflict"
    after = dict(await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id))
    assert after == before


# --- replay -------------------------------------------------------------------------------


async def test_replay_resends_only_that_endpoints_failed_deliveries_since_a_time(
    client: Client,
    tenant: Tenant,
    settings: Settings,
    receiver_factory: ReceiverFactory,
    worker: None,
    conn: asyncpg.Connection,
) -> None:
    accepted = {"ok@example.com"}

    async def by_email(got: Received) -> web.Response:
        return web.Response(status=200 if got.json()["data"]["email"] in accepted else 500)

    a_receiver = await receiver_factory(reply=by_email)
    b_receiver = await receiver_factory(statuses=[500])
    a = (await add_endpoint(client, tenant, a_receiver.url))["id"]
    b = (await add_endpoint(client, tenant, b_receiver.url))["id"]

    old = (await post_lead(client, tenant, email="old@example.com"))["id"]
    for endpoint in (a, b):
        await wait_for_state(conn, await delivery_id_of(conn, endpoint, old), "failed")
    await asyncio.sleep(0.01)
    since = datetime.now(UTC)
    new = (await post_lead(client, tenant, email="new@example.com"))["id"]
    ok = (await post_lead(client, tenant, email="ok@example.com"))["id"]
    ids = {
        (e, lead): await delivery_id_of(conn, e, lead) for e in (a, b) for lead in (old, new, ok)
    }
    for (endpoint, lead), delivery_id in ids.items():
        final = "succeeded" if (endpoint, lead) == (a, ok) else "failed"
        await wait_for_state(conn, delivery_id, final)
    accepted.add("new@example.com")

    response = await client.post(
        f"/v1/endpoints/{a}/replay",
        json={"since": since.isoformat(), "state": "failed"},
        headers=tenant.headers,
    )

    assert response.status == 200, await response.text()
    assert await response.json() == {"replayed": 1}
    await wait_for_state(conn, ids[a, new], "succeeded")
    states = {key: await state_of(conn, d) for key, d in ids.items()}
    assert states == {
        (a, old): "failed", (a, new): "succeeded", (a, ok): "succeeded",
        (b, old): "failed", (b, new): "failed", (b, ok): "failed",
    }  # fmt: skip
    emails = [got.json()["data"]["email"] for got in a_receiver.received]
    attempts = len(settings.retry_schedule)
    assert (emails.count("old@example.com"), emails.count("new@example.com")) == (
        attempts,
        attempts + 1,
    )


async def test_replay_of_an_unknown_endpoint_is_404(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/endpoints/ep_missing/replay",
        json={"since": "2000-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert response.status == 404


# --- a lead's deliveries ------------------------------------------------------------------


async def test_lead_detail_includes_its_recent_deliveries(
    client: Client, tenant: Tenant, scene: Scene
) -> None:
    lead = (await get_json(client, tenant, f"/v1/leads/{scene.leads['L1']}"))["data"]
    listed = await get_json(client, tenant, "/v1/deliveries", lead_id=scene.leads["L1"])

    assert lead["deliveries"] == listed["data"]
    assert sorted(d["id"] for d in lead["deliveries"]) == sorted(
        d for (_, name, _), d in scene.deliveries.items() if name == "L1"
    )
