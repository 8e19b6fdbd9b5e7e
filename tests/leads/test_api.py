"""The leads API: listing with filters and paging, get, patch, delete, tenancy and scopes."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import TestClient

from gateway.leads.models import DETAIL_ONLY
from tests.conftest import Tenant, TenantFactory, add_key, events_of

Client = TestClient[Any, Any]
Params = list[tuple[str, str]]

DEFAULT_STAGES = "new, contacted, qualified, proposal, won, lost"


async def create(client: Client, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    """Create a lead through the API and return it as the API shows it."""
    response = await client.post("/v1/leads", json=fields, headers=tenant.headers)
    assert response.status == 201, await response.text()
    lead: dict[str, Any] = (await response.json())["data"]
    return lead


async def create_many(client: Client, tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """`count` leads, oldest first."""
    return [await create(client, tenant, email=f"lead{i}@example.com") for i in range(count)]


async def page(client: Client, tenant: Tenant, params: Params | None = None) -> dict[str, Any]:
    response = await client.get("/v1/leads", params=params or [], headers=tenant.headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def listed_ids(client: Client, tenant: Tenant, params: Params) -> list[str]:
    return [lead["id"] for lead in (await page(client, tenant, params))["data"]]


def ids(leads: list[dict[str, Any]]) -> list[str]:
    return [lead["id"] for lead in leads]


async def detail(client: Client, tenant: Tenant, lead_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = (await response.json())["data"]
    return body


async def patch(
    client: Client, tenant: Tenant, lead_id: str, fields: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    response = await client.patch(f"/v1/leads/{lead_id}", json=fields, headers=tenant.headers)
    return response.status, await response.json()


def without_history(lead: dict[str, Any]) -> dict[str, Any]:
    """The lead itself, without what GET adds: its stage history, recent deliveries, …"""
    return {k: v for k, v in lead.items() if k not in DETAIL_ONLY}


def shifted(timestamp: str, microseconds: int) -> str:
    moment = datetime.fromisoformat(timestamp) + timedelta(microseconds=microseconds)
    return moment.isoformat()


# --- GET /v1/leads: shape and order ---------------------------------------------------------


async def test_list_body_has_data_total_limit_offset_next_cursor(
    client: Client, tenant: Tenant
) -> None:
    lead = await create(client, tenant, email="ada@example.com", first_name="Ada")
    body = await page(client, tenant)
    assert body == {"data": [lead], "total": 1, "limit": 50, "offset": 0, "next_cursor": None}


async def test_list_is_newest_first(client: Client, tenant: Tenant) -> None:
    leads = await create_many(client, tenant, 3)
    assert await listed_ids(client, tenant, []) == ids(leads)[::-1]


# --- filters ----------------------------------------------------------------------------------


async def test_list_filters_by_repeated_stage(client: Client, tenant: Tenant) -> None:
    new = await create(client, tenant, email="new@example.com", stage="new")
    await create(client, tenant, email="contacted@example.com", stage="contacted")
    won = await create(client, tenant, email="won@example.com", stage="won")
    body = await page(client, tenant, [("stage", "new"), ("stage", "won")])
    assert ids(body["data"]) == [won["id"], new["id"]]
    assert body["total"] == 2


async def test_list_filters_by_source(client: Client, tenant: Tenant) -> None:
    await create(client, tenant, email="a@example.com", source="facebook")
    google = await create(client, tenant, email="b@example.com", source="google")
    await create(client, tenant, email="c@example.com")
    assert await listed_ids(client, tenant, [("source", "google")]) == [google["id"]]


async def test_list_filters_by_campaign(client: Client, tenant: Tenant) -> None:
    spring = await create(client, tenant, email="a@example.com", campaign="spring")
    await create(client, tenant, email="b@example.com", campaign="summer")
    assert await listed_ids(client, tenant, [("campaign", "spring")]) == [spring["id"]]


@pytest.mark.parametrize(
    ("term", "who"),
    [
        ("grac", "grace"),  # first name
        ("LOVEL", "ada"),  # last name, case-insensitively
        ("ada lovelace", "ada"),  # first and last name together
        ("navy.example", "grace"),  # email
        ("4155550123", "ada"),  # phone
        ("engines", "ada"),  # company
    ],
)
async def test_list_search_matches_name_email_phone_and_company(
    client: Client, tenant: Tenant, term: str, who: str
) -> None:
    ada = await create(
        client, tenant, first_name="Ada", last_name="Lovelace", email="ada@analytical.example",
        phone="+14155550123", company="Analytical Engines",
    )  # fmt: skip
    grace = await create(
        client, tenant, first_name="Grace", last_name="Hopper", email="grace@navy.example",
        phone="+14155550199", company="Cobol Inc",
    )  # fmt: skip
    expected = {"ada": ada, "grace": grace}[who]
    assert await listed_ids(client, tenant, [("search", term)]) == [expected["id"]]


@pytest.mark.parametrize(
    ("term", "literal", "lookalike"),
    [("100%", "100% Solar", "1000 Solar"), ("a_b", "a_b Roofing", "axb Roofing")],
)
async def test_list_search_treats_percent_and_underscore_literally(
    client: Client, tenant: Tenant, term: str, literal: str, lookalike: str
) -> None:
    match = await create(client, tenant, email="match@example.com", company=literal)
    await create(client, tenant, email="lookalike@example.com", company=lookalike)
    assert await listed_ids(client, tenant, [("search", term)]) == [match["id"]]


async def test_list_filters_created_from_inclusive_to_exclusive(
    client: Client, tenant: Tenant
) -> None:
    _, second, third = await create_many(client, tenant, 3)
    window = [("from", second["created_at"]), ("to", third["created_at"])]
    assert await listed_ids(client, tenant, window) == [second["id"]]


async def test_list_from_accepts_a_numeric_utc_offset(client: Client, tenant: Tenant) -> None:
    _, second, third = await create_many(client, tenant, 3)
    # The same instant written at +02:00: the `+` must reach the server url-encoded as %2B.
    plus_two = datetime.fromisoformat(second["created_at"]).astimezone(timezone(timedelta(hours=2)))
    assert plus_two.isoformat().endswith("+02:00")
    assert await listed_ids(client, tenant, [("from", plus_two.isoformat())]) == [
        third["id"],
        second["id"],
    ]


async def test_list_filters_by_updated_since(client: Client, tenant: Tenant) -> None:
    first, _, third = await create_many(client, tenant, 3)
    response = await client.post(
        "/v1/postback", json={"email": first["email"], "company": "Later"}, headers=tenant.headers
    )
    assert response.status == 200
    # Just after the newest creation: only the lead updated since then remains.
    since = shifted(third["updated_at"], 1)
    assert await listed_ids(client, tenant, [("updated_since", since)]) == [first["id"]]


async def test_list_filters_by_custom_data_key(client: Client, tenant: Tenant) -> None:
    solar = await create(client, tenant, email="a@example.com", custom_data={"vertical": "solar"})
    await create(client, tenant, email="b@example.com", custom_data={"vertical": "roofing"})
    await create(client, tenant, email="c@example.com")
    assert await listed_ids(client, tenant, [("custom.vertical", "solar")]) == [solar["id"]]


async def test_list_custom_filters_must_all_hold(client: Client, tenant: Tenant) -> None:
    both = await create(
        client, tenant, email="a@example.com", custom_data={"vertical": "solar", "state": "CA"}
    )
    await create(
        client, tenant, email="b@example.com", custom_data={"vertical": "solar", "state": "TX"}
    )
    await create(
        client, tenant, email="c@example.com", custom_data={"vertical": "roofing", "state": "CA"}
    )
    filters = [("custom.vertical", "solar"), ("custom.state", "CA")]
    body = await page(client, tenant, filters)
    assert ids(body["data"]) == [both["id"]]
    assert body["total"] == 1


async def test_list_custom_filter_matches_a_number_by_its_text(
    client: Client, tenant: Tenant
) -> None:
    three = await create(client, tenant, email="a@example.com", custom_data={"tier": 3})
    await create(client, tenant, email="b@example.com", custom_data={"tier": 30})
    await create(client, tenant, email="c@example.com", custom_data={"tier": "x3"})
    assert await listed_ids(client, tenant, [("custom.tier", "3")]) == [three["id"]]


# --- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "101"])
async def test_list_rejects_limit_outside_1_to_100(
    client: Client, tenant: Tenant, limit: str
) -> None:
    response = await client.get("/v1/leads", params={"limit": limit}, headers=tenant.headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == ["limit"]


@pytest.mark.parametrize("limit", [1, 100])
async def test_list_accepts_limit_at_its_bounds(client: Client, tenant: Tenant, limit: int) -> None:
    leads = await create_many(client, tenant, 2)
    body = await page(client, tenant, [("limit", str(limit))])
    assert body["limit"] == limit
    assert ids(body["data"]) == ids(leads)[::-1][:limit]


async def test_list_offset_skips_the_newest(client: Client, tenant: Tenant) -> None:
    leads = await create_many(client, tenant, 5)
    body = await page(client, tenant, [("limit", "2"), ("offset", "2")])
    assert ids(body["data"]) == [leads[2]["id"], leads[1]["id"]]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 2)
    assert body["next_cursor"] is not None


async def test_list_cursor_walk_yields_every_lead_once_in_order(
    client: Client, tenant: Tenant
) -> None:
    leads = await create_many(client, tenant, 7)
    seen: list[str] = []
    cursors: list[str | None] = []
    params: Params = [("limit", "3")]
    for _ in range(5):  # 3 pages expected; a bound so a looping cursor fails instead of hanging
        body = await page(client, tenant, params)
        assert body["total"] == 7
        seen += ids(body["data"])
        cursors.append(body["next_cursor"])
        if body["next_cursor"] is None:
            break
        params = [("limit", "3"), ("cursor", body["next_cursor"])]
    assert seen == ids(leads)[::-1]
    assert [c is None for c in cursors] == [False, False, True]


def cursor_of(value: Any) -> str:
    """A cursor the server never issued, encoded the way its own are."""
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        cursor_of({}),
        cursor_of([1, 2]),
        cursor_of(["2030-01-01T00:00:00Z", "lead_\u0000"]),  # a NUL Postgres text cannot hold
    ],
    ids=["junk", "object", "numbers", "nul-in-id"],
)
async def test_list_rejects_an_invalid_cursor(client: Client, tenant: Tenant, cursor: str) -> None:
    await create_many(client, tenant, 1)
    response = await client.get("/v1/leads", params={"cursor": cursor}, headers=tenant.headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == ["cursor"]


async def test_list_rejects_an_unknown_query_parameter(client: Client, tenant: Tenant) -> None:
    response = await client.get("/v1/leads", params={"colour": "red"}, headers=tenant.headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == ["colour"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("search", "a\u0000b"), ("source", "a\u0000b"), ("custom.vertical", "a\u0000b")],
    ids=["search", "source", "custom"],
)
async def test_list_rejects_a_nul_character_in_a_filter(
    client: Client, tenant: Tenant, name: str, value: str
) -> None:
    response = await client.get("/v1/leads", params={name: value}, headers=tenant.headers)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "invalid_request"
    assert list(error["fields"]) == [name]


# --- tenancy ----------------------------------------------------------------------------------


async def test_other_tenant_lists_none_of_the_leads(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    await create_many(client, tenant, 2)
    other = await make_tenant("other")
    assert await page(client, other) == {
        "data": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("method", "body"), [("GET", None), ("PATCH", {"first_name": "Mallory"}), ("DELETE", None)]
)
async def test_other_tenants_lead_is_not_found(
    client: Client, tenant: Tenant, make_tenant: TenantFactory, method: str, body: Any
) -> None:
    lead = await create(client, tenant, email="ada@example.com", first_name="Ada")
    other = await make_tenant("other")
    response = await client.request(
        method, f"/v1/leads/{lead['id']}", json=body, headers=other.headers
    )
    assert response.status == 404
    text = await response.text()
    assert "ada@example.com" not in text
    error = (await response.json())["error"]
    assert error["code"] == "not_found"
    # Nothing happened to the lead either.
    assert without_history(await detail(client, tenant, lead["id"])) == lead


# --- GET /v1/leads/{id} -----------------------------------------------------------------------


async def test_get_returns_the_lead_with_its_creation_in_stage_history(
    client: Client, tenant: Tenant
) -> None:
    lead = await create(client, tenant, email="ada@example.com", stage="contacted")
    got = await detail(client, tenant, lead["id"])
    assert without_history(got) == lead
    assert got["stage_history"] == [
        {
            "from_stage": None,
            "to_stage": "contacted",
            "forced": False,
            "at": lead["created_at"],
            "api_key_id": tenant.key_id,
        }
    ]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_lead_id_with_a_nul_character_is_not_found(
    client: Client, tenant: Tenant, method: str
) -> None:
    body = {"first_name": "Ada"} if method == "PATCH" else None
    response = await client.request(
        method, "/v1/leads/lead_%00x", json=body, headers=tenant.headers
    )
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


# --- PATCH /v1/leads/{id} ---------------------------------------------------------------------


async def test_patch_moves_stage_backward_and_history_marks_it_forced(
    client: Client, tenant: Tenant
) -> None:
    lead = await create(client, tenant, email="ada@example.com", stage="won")
    status, body = await patch(client, tenant, lead["id"], {"stage": "contacted"})
    assert status == 200
    assert body["data"]["stage"] == "contacted"
    history = body["data"]["stage_history"]
    assert [(h["from_stage"], h["to_stage"], h["forced"]) for h in history] == [
        (None, "won", False),
        ("won", "contacted", True),
    ]
    assert history[1]["api_key_id"] == tenant.key_id


async def test_patch_moves_stage_forward_unforced(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {"stage": "proposal"})
    assert status == 200
    assert body["data"]["stage"] == "proposal"
    last = body["data"]["stage_history"][-1]
    assert (last["from_stage"], last["to_stage"], last["forced"]) == ("new", "proposal", False)


async def test_patch_unknown_stage_is_rejected_naming_the_allowed_stages(
    client: Client, tenant: Tenant
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {"stage": "pending"})
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert DEFAULT_STAGES in body["error"]["message"]
    assert list(body["error"]["fields"]) == ["stage"]
    assert (await detail(client, tenant, lead["id"]))["stage"] == "new"


async def test_patch_null_clears_a_field(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com", company="Acme", first_name="Ada")
    status, body = await patch(client, tenant, lead["id"], {"company": None})
    assert status == 200
    assert body["data"]["company"] is None
    assert body["data"]["first_name"] == "Ada"
    assert (await detail(client, tenant, lead["id"]))["company"] is None


async def test_patch_normalises_email(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {"email": "  Ada.L@Example.COM "})
    assert status == 200
    assert body["data"]["email"] == "ada.l@example.com"


async def test_patch_rejects_unknown_fields(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {"colour": "red", "first_name": "X"})
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert list(body["error"]["fields"]) == ["colour"]
    assert without_history(await detail(client, tenant, lead["id"])) == lead


@pytest.mark.parametrize(
    ("field", "value"),
    [("first_name", "a\u0000b"), ("custom_data", {"note": "a\u0000b"})],
    ids=["first_name", "custom_data"],
)
async def test_patch_rejects_a_nul_character_in_a_field(
    client: Client, tenant: Tenant, field: str, value: Any
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {field: value})
    assert status == 400
    assert body["error"]["code"] == "invalid_request"
    assert [name.split(".")[0] for name in body["error"]["fields"]] == [field]
    assert without_history(await detail(client, tenant, lead["id"])) == lead


async def test_patch_email_of_another_lead_is_a_conflict(client: Client, tenant: Tenant) -> None:
    await create(client, tenant, email="taken@example.com")
    lead = await create(client, tenant, email="ada@example.com")
    status, body = await patch(client, tenant, lead["id"], {"email": "Taken@example.com"})
    assert status == 409
    assert body["error"]["code"] == "conflict"
    assert list(body["error"]["fields"]) == ["email"]
    assert (await detail(client, tenant, lead["id"]))["email"] == "ada@example.com"


async def test_patch_merges_custom_data_and_null_removes_a_key(
    client: Client, tenant: Tenant
) -> None:
    lead = await create(client, tenant, email="ada@example.com", custom_data={"a": 1, "b": "two"})
    status, body = await patch(client, tenant, lead["id"], {"custom_data": {"b": None, "c": 3}})
    assert status == 200
    assert body["data"]["custom_data"] == {"a": 1, "c": 3}
    assert (await detail(client, tenant, lead["id"]))["custom_data"] == {"a": 1, "c": 3}


async def test_patch_that_changes_nothing_writes_no_event(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com", company="Acme", stage="contacted")
    before = await events_of(conn, tenant.id)
    same = {"email": "ADA@example.com", "company": "Acme", "stage": "Contacted"}
    status, body = await patch(client, tenant, lead["id"], same)
    assert status == 200
    assert without_history(body["data"]) == lead  # updated_at included: nothing was written
    assert len(body["data"]["stage_history"]) == 1
    assert await events_of(conn, tenant.id) == before


# --- DELETE /v1/leads/{id} --------------------------------------------------------------------


async def test_delete_answers_id_and_deleted(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    response = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert response.status == 200
    assert await response.json() == {"id": lead["id"], "deleted": True}


async def test_deleted_lead_is_gone_from_get_and_list(client: Client, tenant: Tenant) -> None:
    kept, gone = await create_many(client, tenant, 2)
    response = await client.delete(f"/v1/leads/{gone['id']}", headers=tenant.headers)
    assert response.status == 200
    response = await client.get(f"/v1/leads/{gone['id']}", headers=tenant.headers)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"
    body = await page(client, tenant)
    assert (ids(body["data"]), body["total"]) == ([kept["id"]], 1)


async def test_delete_erases_personal_fields_in_postgres(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(
        client, tenant, email="ada@example.com", phone="+14155550123", first_name="Ada",
        last_name="Lovelace", company="Engines", ip_address="203.0.113.7", user_agent="Mozilla/5.0",
        referrer="https://example.com/form", custom_data={"dob": "1815-12-10"}, external_id="crm-1",
    )  # fmt: skip
    response = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert response.status == 200
    row = await conn.fetchrow(
        "SELECT email, phone, first_name, last_name, company, ip_address, user_agent, referrer,"
        " custom_data, external_id FROM leads WHERE id = $1",
        lead["id"],
    )
    assert row is not None
    assert dict(row) == {
        "email": None, "phone": None, "first_name": None, "last_name": None, "company": None,
        "ip_address": None, "user_agent": None, "referrer": None, "custom_data": {},
        "external_id": None,
    }  # fmt: skip


async def test_postback_with_an_erased_email_creates_a_new_lead(
    client: Client, tenant: Tenant
) -> None:
    old = await create(client, tenant, email="ada@example.com")
    response = await client.delete(f"/v1/leads/{old['id']}", headers=tenant.headers)
    assert response.status == 200
    response = await client.post(
        "/v1/postback", json={"email": "ada@example.com"}, headers=tenant.headers
    )
    assert response.status == 201
    body = await response.json()
    assert body["created"] is True
    assert body["data"]["id"] != old["id"]
    assert ids((await page(client, tenant))["data"]) == [body["data"]["id"]]


async def test_deleting_twice_is_not_found(client: Client, tenant: Tenant) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    first = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    second = await client.delete(f"/v1/leads/{lead['id']}", headers=tenant.headers)
    assert (first.status, second.status) == (200, 404)
    assert (await second.json())["error"]["code"] == "not_found"


# --- scopes -----------------------------------------------------------------------------------


async def test_read_key_can_list_and_get(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    reader = {"Authorization": f"Bearer {await add_key(conn, tenant, ['read'])}"}
    listed = await client.get("/v1/leads", headers=reader)
    got = await client.get(f"/v1/leads/{lead['id']}", headers=reader)
    assert (listed.status, got.status) == (200, 200)
    assert ids((await listed.json())["data"]) == [lead["id"]]
    assert (await got.json())["data"]["id"] == lead["id"]


@pytest.mark.parametrize(("method", "body"), [("PATCH", {"stage": "won"}), ("DELETE", None)])
async def test_read_key_cannot_change_or_delete(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, method: str, body: Any
) -> None:
    lead = await create(client, tenant, email="ada@example.com")
    reader = {"Authorization": f"Bearer {await add_key(conn, tenant, ['read'])}"}
    response = await client.request(method, f"/v1/leads/{lead['id']}", json=body, headers=reader)
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "forbidden"
    assert without_history(await detail(client, tenant, lead["id"])) == lead


async def test_ingest_key_cannot_list(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await create(client, tenant, email="ada@example.com")
    ingester = {"Authorization": f"Bearer {await add_key(conn, tenant, ['ingest'])}"}
    response = await client.get("/v1/leads", headers=ingester)
    assert response.status == 403
    body = await response.json()
    assert body["error"]["code"] == "forbidden"
    assert "data" not in body
