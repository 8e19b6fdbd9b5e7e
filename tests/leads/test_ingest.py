"""Ingestion: matching order, merge rules, normalisation, the stage pipeline, body shapes."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Tenant, events_of

Client = TestClient[Any, Any]


async def post(client: Client, tenant: Tenant, **fields: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/postback", json=fields, headers=tenant.headers)
    return response.status, await response.json()


async def lead_count(conn: asyncpg.Connection, tenant: Tenant) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM leads WHERE tenant_id = $1", tenant.id)
    return count


async def test_new_email_creates_a_lead_with_201(client: Client, tenant: Tenant) -> None:
    status, body = await post(client, tenant, email="ada@example.com", first_name="Ada")
    assert status == 201
    assert body["created"] is True
    assert body["stage_ignored"] is False
    assert body["data"]["id"].startswith("lead_")
    assert body["data"]["first_name"] == "Ada"
    assert body["data"]["stage"] == "new"


async def test_email_is_matched_trimmed_and_case_insensitively(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    _, first = await post(client, tenant, email="Ada@Example.com")
    status, second = await post(client, tenant, email="  ADA@example.COM ", last_name="Lovelace")
    assert status == 200
    assert second["created"] is False
    assert second["data"]["id"] == first["data"]["id"]
    assert second["data"]["email"] == "ada@example.com"
    assert await lead_count(conn, tenant) == 1


async def test_external_id_match_wins_over_email(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    _, by_ext = await post(client, tenant, external_id="crm-1", first_name="Ext")
    _, by_email = await post(client, tenant, email="grace@example.com")
    _, both = await post(client, tenant, external_id="crm-1", company="Navy")
    assert both["data"]["id"] == by_ext["data"]["id"] != by_email["data"]["id"]
    assert both["data"]["company"] == "Navy"
    assert await lead_count(conn, tenant) == 2


async def test_external_id_given_as_a_number_matches_its_text(
    client: Client, tenant: Tenant
) -> None:
    _, first = await post(client, tenant, external_id=12345)
    _, second = await post(client, tenant, external_id="12345", first_name="N")
    assert first["data"]["external_id"] == "12345"
    assert second["data"]["id"] == first["data"]["id"]


async def test_lead_id_matches_our_lead(client: Client, tenant: Tenant) -> None:
    _, first = await post(client, tenant, email="a@example.com")
    status, second = await post(client, tenant, lead_id=first["data"]["id"], first_name="Al")
    assert status == 200
    assert second["data"]["id"] == first["data"]["id"]
    assert second["data"]["first_name"] == "Al"


async def test_unknown_lead_id_is_404(client: Client, tenant: Tenant) -> None:
    status, body = await post(client, tenant, lead_id="lead_nope", email="x@example.com")
    assert status == 404
    assert body["error"]["code"] == "not_found"


async def test_another_tenants_lead_id_is_404(
    client: Client, tenant: Tenant, make_tenant: Any
) -> None:
    other = await make_tenant("other")
    _, theirs = await post(client, other, email="t@example.com")
    status, body = await post(client, tenant, lead_id=theirs["data"]["id"], first_name="X")
    assert status == 404
    assert "t@example.com" not in str(body)


async def test_same_email_in_two_tenants_makes_two_leads(
    client: Client, tenant: Tenant, make_tenant: Any
) -> None:
    other = await make_tenant("other")
    _, a = await post(client, tenant, email="same@example.com")
    _, b = await post(client, other, email="same@example.com")
    assert a["created"] and b["created"]
    assert a["data"]["id"] != b["data"]["id"]


async def test_phone_is_normalised_to_e164(client: Client, tenant: Tenant) -> None:
    _, body = await post(client, tenant, email="p@example.com", phone="+1 (415) 555-0123")
    assert body["data"]["phone"] == "+14155550123"


async def test_phone_does_not_match_unless_tenant_turns_it_on(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, phone="+14155550123")
    _, second = await post(client, tenant, phone="+1 415 555 0123")
    assert second["created"] is True
    assert await lead_count(conn, tenant) == 2


async def test_phone_matches_when_tenant_turns_it_on(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE tenants SET match_phone = true WHERE id = $1", tenant.id)
    _, first = await post(client, tenant, phone="+14155550123", first_name="P")
    _, second = await post(client, tenant, phone="+1 415-555-0123", last_name="Q")
    assert second["created"] is False
    assert second["data"]["id"] == first["data"]["id"]
    assert second["data"]["last_name"] == "Q"


async def test_email_match_wins_over_phone_match(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE tenants SET match_phone = true WHERE id = $1", tenant.id)
    _, by_phone = await post(client, tenant, phone="+14155550123")
    _, by_email = await post(client, tenant, email="e@example.com")
    _, both = await post(client, tenant, email="e@example.com", phone="+14155550123")
    assert both["data"]["id"] == by_email["data"]["id"] != by_phone["data"]["id"]


async def test_empty_values_do_not_overwrite(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="m@example.com", first_name="Mary", company="Acme")
    _, body = await post(client, tenant, email="m@example.com", first_name="", company=None)
    assert body["data"]["first_name"] == "Mary"
    assert body["data"]["company"] == "Acme"


async def test_non_empty_values_overwrite(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="m@example.com", first_name="Mary", source="ads")
    _, body = await post(client, tenant, email="m@example.com", first_name="Maria")
    assert body["data"]["first_name"] == "Maria"
    assert body["data"]["source"] == "ads"


async def test_custom_data_merges_key_by_key(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="c@example.com", custom_data={"a": 1, "b": {"x": 1}})
    _, body = await post(client, tenant, email="c@example.com", custom_data={"b": 2, "c": 3})
    assert body["data"]["custom_data"] == {"a": 1, "b": 2, "c": 3}


async def test_unknown_top_level_fields_are_kept_in_custom_data(
    client: Client, tenant: Tenant
) -> None:
    _, body = await post(
        client, tenant, email="u@example.com", vertical="solar", score=87, custom_data={"k": 1}
    )
    assert body["data"]["custom_data"] == {"k": 1, "vertical": "solar", "score": 87}


async def test_form_completion_never_goes_down(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="f@example.com", form_completion_percent=80)
    _, lower = await post(client, tenant, email="f@example.com", form_completion_percent=40)
    assert lower["data"]["form_completion_percent"] == 80
    _, higher = await post(client, tenant, email="f@example.com", form_completion_percent=95.5)
    assert higher["data"]["form_completion_percent"] == 95.5


async def test_postback_that_changes_nothing_emits_no_event(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    fields = {"email": "n@example.com", "first_name": "N", "custom_data": {"a": 1}}
    await post(client, tenant, **fields)
    status, body = await post(client, tenant, **fields)
    assert status == 200
    assert body["data"]["updated_at"] == body["data"]["created_at"]
    assert [e["type"] for e in await events_of(conn, tenant.id)] == ["lead.created"]


async def test_stage_moves_forward(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="s@example.com")
    _, body = await post(client, tenant, email="s@example.com", stage="qualified")
    assert body["data"]["stage"] == "qualified"
    assert body["stage_ignored"] is False


async def test_backward_stage_is_ignored_but_rest_applies(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="s@example.com", stage="proposal")
    status, body = await post(client, tenant, email="s@example.com", stage="new", company="Co")
    assert status == 200
    assert body["stage_ignored"] is True
    assert body["data"]["stage"] == "proposal"
    assert body["data"]["company"] == "Co"


async def test_force_stage_moves_backward_and_is_recorded_as_forced(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, email="s@example.com", stage="proposal")
    _, body = await post(client, tenant, email="s@example.com", stage="new", force_stage=True)
    assert body["data"]["stage"] == "new"
    assert body["stage_ignored"] is False
    rows = await conn.fetch(
        "SELECT from_stage, to_stage, forced, api_key_id FROM stage_history WHERE lead_id = $1"
        " ORDER BY id",
        body["data"]["id"],
    )
    assert [tuple(r) for r in rows] == [
        (None, "proposal", False, tenant.key_id),
        ("proposal", "new", True, tenant.key_id),
    ]


async def test_exit_stage_is_reachable_from_any_stage(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="l@example.com", stage="qualified")
    _, body = await post(client, tenant, email="l@example.com", stage="lost")
    assert body["data"]["stage"] == "lost"


async def test_exit_stage_is_left_only_by_force(client: Client, tenant: Tenant) -> None:
    await post(client, tenant, email="l@example.com", stage="lost")
    _, ignored = await post(client, tenant, email="l@example.com", stage="won")
    assert ignored["stage_ignored"] is True
    assert ignored["data"]["stage"] == "lost"


async def test_resending_current_stage_is_not_a_move(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await post(client, tenant, email="r@example.com", stage="contacted")
    _, body = await post(client, tenant, email="r@example.com", stage="Contacted")
    assert body["stage_ignored"] is False
    history = await conn.fetchval(
        "SELECT count(*) FROM stage_history WHERE lead_id = $1", body["data"]["id"]
    )
    assert history == 1


async def test_stage_names_match_without_regard_to_case(client: Client, tenant: Tenant) -> None:
    _, body = await post(client, tenant, email="k@example.com", stage="  QUALIFIED ")
    assert body["data"]["stage"] == "qualified"


async def test_unknown_stage_is_400_naming_allowed_stages(client: Client, tenant: Tenant) -> None:
    status, body = await post(client, tenant, email="k@example.com", stage="married")
    assert status == 400
    assert body["error"]["fields"]["stage"] == (
        "must be one of: new, contacted, qualified, proposal, won, lost"
    )


async def test_custom_pipeline_is_enforced(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "UPDATE tenants SET stages = $2, exit_stages = $3 WHERE id = $1",
        tenant.id,
        ["Form Started", "Application Submitted", "Paid"],
        ["rejected"],
    )
    _, first = await post(client, tenant, email="c@example.com")
    assert first["data"]["stage"] == "Form Started"
    _, paid = await post(client, tenant, email="c@example.com", stage="paid")
    assert paid["data"]["stage"] == "Paid"
    status, _ = await post(client, tenant, email="c@example.com", stage="won")
    assert status == 400


async def test_form_encoded_body_is_accepted(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/leads",
        data="email=form%40example.com&first_name=Fo&custom_data%5Bplan%5D=pro&campaign=&extra=1",
        headers={**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    body = await response.json()
    assert response.status == 201
    assert body["data"]["email"] == "form@example.com"
    assert body["data"]["campaign"] is None
    assert body["data"]["custom_data"] == {"plan": "pro", "extra": "1"}


async def test_form_values_are_coerced_to_their_types(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/postback",
        data={"email": "t@example.com", "form_fields_total": "12", "estimated_value": "1500.5"},
        headers=tenant.headers,
    )
    body = await response.json()
    assert body["data"]["form_fields_total"] == 12
    assert body["data"]["estimated_value"] == 1500.5


async def test_get_postback_takes_query_parameters_and_key(client: Client, tenant: Tenant) -> None:
    response = await client.get(
        "/v1/postback",
        params={"api_key": tenant.key, "email": "pixel@example.com", "utm_source": "fb"},
    )
    body = await response.json()
    assert response.status == 201
    assert body["data"]["utm_source"] == "fb"
    assert "api_key" not in body["data"]["custom_data"]


async def test_query_string_key_is_refused_outside_get_postback(
    client: Client, tenant: Tenant
) -> None:
    response = await client.get("/v1/leads", params={"api_key": tenant.key})
    assert response.status == 401


async def test_x_api_key_header_authenticates(client: Client, tenant: Tenant) -> None:
    response = await client.post(
        "/v1/postback", json={"email": "h@example.com"}, headers={"X-API-Key": tenant.key}
    )
    assert response.status == 201


async def test_email_taken_by_another_lead_is_409_on_match_by_external_id(
    client: Client, tenant: Tenant
) -> None:
    await post(client, tenant, email="taken@example.com")
    await post(client, tenant, external_id="e-1")
    status, body = await post(client, tenant, external_id="e-1", email="taken@example.com")
    # The external id matches first; its new email already belongs to another lead.
    assert status == 409
    assert body["error"]["code"] == "conflict"
    assert body["error"]["fields"] == {"email": "already used by another lead"}
