"""The deals API against real Postgres: create, validate, list and filter, page, patch,
delete, tenancy, idempotency, the outbox, the lead's detail, erasure and analytics."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway.tenants import set_default_currency
from tests.conftest import Tenant, TenantFactory, add_key, events_of

Client = TestClient[Any, Any]


async def new_lead(client: Client, tenant: Tenant, email: str = "ada@example.com") -> str:
    response = await client.post("/v1/leads", json={"email": email}, headers=tenant.headers)
    assert response.status == 201, await response.text()
    lead_id: str = (await response.json())["data"]["id"]
    return lead_id


async def create(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/deals", json={"title": "Deal", **fields},
                                 headers=tenant.headers)  # fmt: skip
    assert response.status == 201, await response.text()
    deal: dict[str, Any] = (await response.json())["data"]
    return deal


async def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await response.json())["error"]
    return body


async def listed(client: Client, tenant: Tenant, params: list[tuple[str, str]]) -> dict[str, Any]:
    response = await client.get("/v1/deals", params=params, headers=tenant.headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_create_answers_201_with_the_deal_and_defaults(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/deals",
        json={"title": "Enterprise Deal", "value": 50000, "stage": "negotiation",
              "probability": 75, "custom_data": {"seats": 40}},
        headers=tenant.headers,
    )  # fmt: skip
    body = await response.json()
    assert response.status == 201, body
    deal = body["data"]
    assert deal["id"].startswith("deal_")
    assert (deal["title"], deal["value"], deal["currency"]) == ("Enterprise Deal", 50000, "USD")
    assert (deal["stage"], deal["probability"], deal["lead_id"]) == ("negotiation", 75, None)
    assert deal["custom_data"] == {"seats": 40}


async def test_value_is_stored_exactly_and_returned_as_a_json_number(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    deal = await create(client, tenant, value="12345678901.1234")
    assert deal["value"] == 12345678901.1234
    response = await client.get(f"/v1/deals/{deal['id']}", headers=tenant.headers)
    assert b'"value":12345678901.1234,' in await response.read()
    stored = await conn.fetchval("SELECT value::text FROM deals")
    assert stored == "12345678901.1234"


async def test_currency_defaults_to_the_tenants_and_is_upper_cased(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await set_default_currency(conn, tenant.id, "EUR")
    assert (await create(client, tenant))["currency"] == "EUR"
    assert (await create(client, tenant, currency="sek"))["currency"] == "SEK"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": 10}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x", "value": -1}, "value"),
        ({"title": "x", "value": 1.23456}, "value"),
        ({"title": "x", "value": 1e20}, "value"),
        ({"title": "x", "value": "lots"}, "value"),
        ({"title": "x", "probability": 101}, "probability"),
        ({"title": "x", "probability": -1}, "probability"),
        ({"title": "x", "currency": "EURO"}, "currency"),
        ({"title": "x", "currency": "ABC"}, "currency"),
        ({"title": "x", "custom_data": "no"}, "custom_data"),
        ({"title": "x", "colour": "red"}, "colour"),
    ],
)
async def test_create_rejects_invalid_fields_naming_each(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/deals", json=body, headers=tenant.headers)
    error = await error_of(response)
    assert response.status == 400
    assert error["code"] == "invalid_request"
    assert field in error["fields"], error
    assert error["request_id"]
    assert await conn.fetchval("SELECT count(*) FROM deals") == 0


async def test_a_deal_for_a_lead_of_the_same_tenant(client: Client, tenant: Tenant) -> None:
    lead_id = await new_lead(client, tenant)
    assert (await create(client, tenant, lead_id=lead_id))["lead_id"] == lead_id


async def test_a_lead_of_another_tenant_is_not_found_naming_lead_id(
    client: Client, tenant: Tenant, make_tenant: TenantFactory, conn: asyncpg.Connection
) -> None:
    other = await make_tenant("other")
    their_lead = await new_lead(client, other)
    response = await client.post(
        "/v1/deals", json={"title": "x", "lead_id": their_lead}, headers=tenant.headers
    )
    error = await error_of(response)
    assert response.status == 404
    assert error["code"] == "not_found"
    assert error["fields"] == {"lead_id": "no such lead"}
    assert await conn.fetchval("SELECT count(*) FROM deals") == 0


async def test_an_erased_lead_cannot_get_a_deal(client: Client, tenant: Tenant) -> None:
    lead_id = await new_lead(client, tenant)
    await client.delete(f"/v1/leads/{lead_id}", headers=tenant.headers)
    response = await client.post(
        "/v1/deals", json={"title": "x", "lead_id": lead_id}, headers=tenant.headers
    )
    assert response.status == 404


async def test_get_another_tenants_deal_is_not_found(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    deal = await create(client, other)
    path = f"/v1/deals/{deal['id']}"
    for method in ("GET", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {"json": {"stage": "won"}} if method == "PATCH" else {}
        response = await client.request(method, path, headers=tenant.headers, **kwargs)
        assert response.status == 404, method
        assert (await error_of(response))["code"] == "not_found"
    response = await client.get(path, headers=other.headers)
    assert (await response.json())["data"]["stage"] is None  # untouched


async def test_other_tenant_lists_none_of_the_deals(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    await create(client, tenant)
    other = await make_tenant("other")
    page = await listed(client, other, [])
    assert (page["data"], page["total"]) == ([], 0)


async def test_list_body_is_the_leads_lists(client: Client, tenant: Tenant) -> None:
    older = await create(client, tenant, title="older")
    newer = await create(client, tenant, title="newer")
    page = await listed(client, tenant, [])
    assert [d["id"] for d in page["data"]] == [newer["id"], older["id"]]
    assert (page["total"], page["limit"], page["offset"], page["next_cursor"]) == (2, 50, 0, None)
    assert (await listed(client, tenant, [("total", "false")]))["total"] is None


async def test_list_filters_by_repeated_stage(client: Client, tenant: Tenant) -> None:
    a = await create(client, tenant, stage="negotiation")
    b = await create(client, tenant, stage="won")
    await create(client, tenant, stage="lost")
    await create(client, tenant)
    page = await listed(client, tenant, [("stage", "won"), ("stage", "negotiation")])
    assert [d["id"] for d in page["data"]] == [b["id"], a["id"]]
    assert page["total"] == 2


async def test_list_filters_by_min_and_max_value_inclusive(client: Client, tenant: Tenant) -> None:
    small = await create(client, tenant, value=100)
    mid = await create(client, tenant, value=500.5)
    big = await create(client, tenant, value=10000)
    await create(client, tenant)  # no value: outside any value filter
    ids = [d["id"] for d in (await listed(client, tenant, [("min_value", "500.5")]))["data"]]
    assert ids == [big["id"], mid["id"]]
    ids = [d["id"] for d in (await listed(client, tenant, [("max_value", "500.5")]))["data"]]
    assert ids == [mid["id"], small["id"]]
    both = [("min_value", "101"), ("max_value", "9999")]
    assert [d["id"] for d in (await listed(client, tenant, both))["data"]] == [mid["id"]]


async def test_list_filters_by_lead_id(client: Client, tenant: Tenant) -> None:
    lead_id = await new_lead(client, tenant)
    mine = await create(client, tenant, lead_id=lead_id)
    await create(client, tenant)
    page = await listed(client, tenant, [("lead_id", lead_id)])
    assert [d["id"] for d in page["data"]] == [mine["id"]]


@pytest.mark.parametrize(
    "params",
    [[("min_value", "-1")], [("max_value", "cheap")], [("limit", "0")], [("limit", "101")],
     [("cursor", "not-a-cursor")], [("cursor", "WzFd")], [("colour", "red")]],
)  # fmt: skip
async def test_list_rejects_bad_parameters(
    client: Client, tenant: Tenant, params: list[tuple[str, str]]
) -> None:
    response = await client.get("/v1/deals", params=params, headers=tenant.headers)
    assert response.status == 400
    assert (await error_of(response))["code"] == "invalid_request"


async def test_cursor_walk_yields_every_deal_once_newest_first(
    client: Client, tenant: Tenant
) -> None:
    made = [(await create(client, tenant, title=f"d{i}", stage="open"))["id"] for i in range(7)]
    await create(client, tenant, stage="closed")  # filtered out on every page
    seen: list[str] = []
    params = [("limit", "3"), ("stage", "open")]
    cursor = None
    while True:
        page = await listed(client, tenant, params + ([("cursor", cursor)] if cursor else []))
        assert page["total"] == 7
        seen += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_patch_changes_fields_and_null_clears_them(client: Client, tenant: Tenant) -> None:
    deal = await create(client, tenant, value=10, probability=50, custom_data={"a": 1, "b": 2})
    response = await client.patch(
        f"/v1/deals/{deal['id']}",
        json={"value": 20.25, "probability": None, "custom_data": {"a": None, "c": 3}},
        headers=tenant.headers,
    )
    body = await response.json()
    assert response.status == 200, body
    changed = body["data"]
    assert (changed["value"], changed["probability"]) == (20.25, None)
    assert changed["custom_data"] == {"b": 2, "c": 3}
    assert changed["updated_at"] > deal["updated_at"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"title": None}, "title"), ({"currency": None}, "currency"), ({"value": -5}, "value"),
     ({"probability": 101}, "probability"), ({"currency": "XYZ"}, "currency"),
     ({"id": "deal_x"}, "id")],
)  # fmt: skip
async def test_patch_rejects_invalid_fields(
    client: Client, tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    deal = await create(client, tenant)
    response = await client.patch(f"/v1/deals/{deal['id']}", json=body, headers=tenant.headers)
    assert response.status == 400
    assert field in (await error_of(response))["fields"]


async def test_patch_to_another_tenants_lead_is_not_found(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    their_lead = await new_lead(client, other)
    deal = await create(client, tenant)
    response = await client.patch(
        f"/v1/deals/{deal['id']}", json={"lead_id": their_lead}, headers=tenant.headers
    )
    assert response.status == 404
    assert (await error_of(response))["fields"] == {"lead_id": "no such lead"}


async def test_events_are_written_with_each_change(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await new_lead(client, tenant)
    before = len(await events_of(conn, tenant.id))
    deal = await create(client, tenant, stage="qualified", lead_id=lead_id)
    path = f"/v1/deals/{deal['id']}"
    await client.patch(path, json={"value": 900}, headers=tenant.headers)
    await client.patch(path, json={"stage": "won", "probability": 100}, headers=tenant.headers)
    await client.patch(path, json={"stage": "won"}, headers=tenant.headers)  # no change
    await client.delete(path, headers=tenant.headers)
    events = (await events_of(conn, tenant.id))[before:]
    types = [e["type"] for e in events]
    assert types == ["deal.created", "deal.updated", "deal.updated", "deal.stage_changed",
                     "deal.deleted"]  # fmt: skip
    assert all(e["lead_id"] == lead_id for e in events)
    created, updated, _, moved, deleted = (e["body"]["data"] for e in events)
    assert created == deal
    assert updated["value"] == 900
    assert (moved["stage"], moved["previous_stage"], moved["probability"]) == (
        "won", "qualified", 100,
    )  # fmt: skip
    assert deleted["deleted"] is True
    assert deleted["id"] == deal["id"]


async def test_delete_removes_the_deal(client: Client, tenant: Tenant) -> None:
    deal = await create(client, tenant)
    response = await client.delete(f"/v1/deals/{deal['id']}", headers=tenant.headers)
    assert await response.json() == {"id": deal["id"], "deleted": True}
    response = await client.get(f"/v1/deals/{deal['id']}", headers=tenant.headers)
    assert response.status == 404
    response = await client.delete(f"/v1/deals/{deal['id']}", headers=tenant.headers)
    assert response.status == 404


async def test_post_with_an_idempotency_key_creates_one_deal_and_replays(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": "deal-1"}
    body = {"title": "Once", "value": 10}
    first = await client.post("/v1/deals", json=body, headers=headers)
    second = await client.post("/v1/deals", json=body, headers=headers)
    assert (first.status, second.status) == (201, 201)
    assert await second.read() == await first.read()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await conn.fetchval("SELECT count(*) FROM deals") == 1
    assert [e["type"] for e in await events_of(conn, tenant.id)] == ["deal.created"]
    other = await client.post("/v1/deals", json={"title": "Other"}, headers=headers)
    assert other.status == 422
    assert (await error_of(other))["code"] == "idempotency_key_reused"


async def test_scopes_read_lists_and_manage_changes(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    deal = await create(client, tenant)
    reader = {"Authorization": f"Bearer {await add_key(conn, tenant, ['read'])}"}
    assert (await client.get("/v1/deals", headers=reader)).status == 200
    assert (await client.get(f"/v1/deals/{deal['id']}", headers=reader)).status == 200
    response = await client.post("/v1/deals", json={"title": "x"}, headers=reader)
    assert response.status == 403
    ingester = {"Authorization": f"Bearer {await add_key(conn, tenant, ['ingest'])}"}
    assert (await client.get("/v1/deals", headers=ingester)).status == 403


async def test_lead_detail_lists_its_deals_newest_first(client: Client, tenant: Tenant) -> None:
    lead_id = await new_lead(client, tenant)
    first = await create(client, tenant, lead_id=lead_id, title="first")
    second = await create(client, tenant, lead_id=lead_id, title="second")
    await create(client, tenant, title="someone else's")
    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    deals = (await response.json())["data"]["deals"]
    assert [d["id"] for d in deals] == [second["id"], first["id"]]


async def test_erasing_a_lead_unlinks_its_deals_and_announces_it(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead_id = await new_lead(client, tenant)
    deal = await create(client, tenant, lead_id=lead_id, title="Kept")
    await client.delete(f"/v1/leads/{lead_id}", headers=tenant.headers)
    response = await client.get(f"/v1/deals/{deal['id']}", headers=tenant.headers)
    kept = (await response.json())["data"]
    assert (kept["title"], kept["lead_id"]) == ("Kept", None)
    events = await events_of(conn, tenant.id)
    assert [e["type"] for e in events][-2:] == ["deal.updated", "lead.deleted"]
    unlinked = events[-2]
    assert (unlinked["lead_id"], unlinked["body"]["data"]["lead_id"]) == (None, None)
    created = next(e for e in events if e["type"] == "deal.created")
    assert created["body"]["data"]["title"] == "Kept"  # a deal's events are not the lead's data


async def test_analytics_pipeline_by_currency_and_stage(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    empty = await client.get("/v1/analytics", headers=tenant.headers)
    assert (await empty.json())["data"]["pipeline"] == []
    await create(client, tenant, stage="negotiation", value=1000, probability=50)
    await create(client, tenant, stage="negotiation", value=500.5, probability=10)
    await create(client, tenant, stage="won", value=200, probability=100)
    await create(client, tenant, stage="won", value=300)  # no probability: unweighted
    await create(client, tenant, stage="won", value=7, currency="EUR", probability=100)
    other = await make_tenant("other")
    await create(client, other, stage="won", value=99999)
    response = await client.get("/v1/analytics", headers=tenant.headers)
    body = await response.json()
    assert response.status == 200, body
    eur, usd = body["data"]["pipeline"]
    won = {"stage": "won", "deals": 1, "value": 7, "weighted_value": 7}
    assert eur == {"currency": "EUR", "deals": 1, "value": 7, "weighted_value": 7, "stages": [won]}
    assert (usd["currency"], usd["deals"], usd["value"], usd["weighted_value"]) == (
        "USD", 4, 2000.5, 750.05,
    )  # fmt: skip
    assert usd["stages"] == [
        {"stage": "negotiation", "deals": 2, "value": 1500.5, "weighted_value": 550.05},
        {"stage": "won", "deals": 2, "value": 500, "weighted_value": 200},
    ]


async def test_patch_with_an_idempotency_key_changes_once_and_replays(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    deal = await create(client, tenant, stage="open")
    headers = {**tenant.headers, "Idempotency-Key": "move-1"}
    path = f"/v1/deals/{deal['id']}"
    first = await client.patch(path, json={"stage": "won"}, headers=headers)
    second = await client.patch(path, json={"stage": "won"}, headers=headers)
    assert await second.read() == await first.read()
    assert second.headers["Idempotent-Replayed"] == "true"
    types = [e["type"] for e in await events_of(conn, tenant.id)]
    assert types == ["deal.created", "deal.stage_changed"]


async def test_list_by_another_tenants_lead_finds_nothing(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    other = await make_tenant("other")
    their_lead = await new_lead(client, other)
    await create(client, other, lead_id=their_lead)
    page = await listed(client, tenant, [("lead_id", their_lead)])
    assert (page["data"], page["total"]) == ([], 0)
