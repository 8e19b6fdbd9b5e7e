"""Sender mappings: stored per tenant, chosen by ?mapping= or the key's default, applied before
validation, so the usual matching deduplicates what senders post in their own field names."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from gateway.keys import create_key
from tests.conftest import Tenant, TenantFactory
from tests.dialects.examples import mapping

Client = TestClient[Any, Any]


async def _add(client: Client, tenant: Tenant, name: str, expression: str) -> Any:
    response = await client.post(
        "/v1/mappings", json={"name": name, "expression": expression}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 201, body
    return body["data"]


async def test_mappings_are_created_listed_changed_and_deleted(
    client: Client, tenant: Tenant
) -> None:
    created = await _add(client, tenant, "salesos", mapping("salesos"))
    assert created["expression"] == mapping("salesos")
    listed = await (await client.get("/v1/mappings", headers=tenant.headers)).json()
    assert [m["name"] for m in listed["data"]] == ["salesos"]
    patched = await client.patch(
        "/v1/mappings/salesos", json={"description": "web forms"}, headers=tenant.headers
    )
    assert (await patched.json())["data"]["description"] == "web forms"
    deleted = await client.delete("/v1/mappings/salesos", headers=tenant.headers)
    assert await deleted.json() == {"name": "salesos", "deleted": True}
    gone = await client.get("/v1/mappings/salesos", headers=tenant.headers)
    assert gone.status == 404


async def test_a_mapping_that_does_not_compile_is_a_400_naming_expression(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/mappings", json={"name": "bad", "expression": "{email:"}, headers=tenant.headers
    )
    body = await response.json()
    assert response.status == 400
    assert body["error"]["fields"]["expression"].startswith("the mapping does not compile: S0")


async def test_a_second_mapping_of_the_same_name_is_a_409(client: Client, tenant: Tenant) -> None:
    await _add(client, tenant, "salesos", "$")
    response = await client.post(
        "/v1/mappings", json={"name": "salesos", "expression": "$"}, headers=tenant.headers
    )
    assert response.status == 409
    assert (await response.json())["error"]["fields"] == {"name": "already used by another mapping"}


async def test_another_tenants_mapping_is_404_and_cannot_be_used(
    client: Client, tenant: Tenant, make_tenant: TenantFactory
) -> None:
    await _add(client, tenant, "salesos", mapping("salesos"))
    other = await make_tenant("other")
    assert (await client.get("/v1/mappings/salesos", headers=other.headers)).status == 404
    response = await client.post(
        "/v1/postback?mapping=salesos", json={"contact_email": "x@example.com"},
        headers=other.headers,
    )  # fmt: skip
    assert response.status == 400
    assert (await response.json())["error"]["fields"] == {"mapping": "no such mapping"}


async def test_a_salesos_sender_is_matched_by_its_contact_email(
    client: Client, tenant: Tenant
) -> None:
    await _add(client, tenant, "salesos", mapping("salesos"))
    body = {"contact_name": "John Doe", "company_name": "Acme Inc",
            "contact_email": "John@Acme.com", "industry": "Technology"}  # fmt: skip
    first = await client.post("/v1/postback?mapping=salesos", json=body, headers=tenant.headers)
    lead = (await first.json())["data"]
    assert first.status == 201
    assert (lead["email"], lead["first_name"], lead["last_name"], lead["company"]) == (
        "john@acme.com", "John", "Doe", "Acme Inc",
    )  # fmt: skip
    assert lead["custom_data"] == {"industry": "Technology"}
    again = await client.post("/v1/leads?mapping=salesos", json=body, headers=tenant.headers)
    assert again.status == 200
    assert (await again.json())["data"]["id"] == lead["id"]


async def test_a_leadrescue_form_is_split_and_keeps_car_model_and_consent(
    client: Client, tenant: Tenant
) -> None:
    await _add(client, tenant, "leadrescue", mapping("leadrescue"))
    response = await client.post(
        "/v1/postback?mapping=leadrescue",
        data={"customer_name": "Anna Karlsson", "phone": "+46701234567",
              "car_model": "Mercedes E-Class", "consent": "true", "license_photo_b64": "aGk="},
        headers=tenant.headers,
    )  # fmt: skip
    lead = (await response.json())["data"]
    assert response.status == 201
    assert (lead["first_name"], lead["last_name"], lead["phone"], lead["source"]) == (
        "Anna", "Karlsson", "+46701234567", "leadrescue",
    )  # fmt: skip
    assert lead["custom_data"] == {"car_model": "Mercedes E-Class", "consent": True}


async def test_a_get_postback_names_its_mapping_in_the_query(
    client: Client, tenant: Tenant
) -> None:
    await _add(client, tenant, "salesos", mapping("salesos"))
    response = await client.get(
        "/v1/postback",
        params={"mapping": "salesos", "api_key": tenant.key, "contact_email": "g@example.com",
                "icp_score": "72"},
    )  # fmt: skip
    lead = (await response.json())["data"]
    assert response.status == 201
    assert lead["email"] == "g@example.com"
    assert lead["custom_data"] == {"icp_score": "72"}  # `mapping` itself is not a field


async def test_a_keys_default_mapping_applies_without_naming_it(
    client: Client, tenant: Tenant, conn: asyncpg.Connection
) -> None:
    await _add(client, tenant, "salesos", mapping("salesos"))
    _, key = await create_key(conn, tenant.id, ["ingest"], mapping="salesos")
    response = await client.post(
        "/v1/postback", json={"contact_email": "k@example.com"},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert (await response.json())["data"]["email"] == "k@example.com"
    in_use = await client.delete("/v1/mappings/salesos", headers=tenant.headers)
    assert in_use.status == 409


async def test_a_bad_mapped_field_is_a_400_naming_the_field_and_the_mapping(
    client: Client, tenant: Tenant
) -> None:
    await _add(client, tenant, "salesos", mapping("salesos"))
    response = await client.post(
        "/v1/postback?mapping=salesos", json={"contact_email": "not-an-email"},
        headers=tenant.headers,
    )  # fmt: skip
    error = (await response.json())["error"]
    assert response.status == 400
    assert set(error["fields"]) == {"email"}
    assert "'salesos'" in error["message"]


async def test_a_mapping_failing_on_a_body_is_a_400_naming_the_mapping(
    client: Client, tenant: Tenant
) -> None:
    await _add(client, tenant, "strict", '$exists(email) ? $ : $error("email is required")')
    response = await client.post(
        "/v1/postback?mapping=strict", json={"name": "x"}, headers=tenant.headers
    )
    error = (await response.json())["error"]
    assert response.status == 400
    assert error["fields"] == {"mapping": "D3137: email is required"}
    assert "'strict'" in error["message"]


async def test_a_mapping_must_give_an_object(client: Client, tenant: Tenant) -> None:
    await _add(client, tenant, "listy", "[email]")
    response = await client.post(
        "/v1/postback?mapping=listy", json={"email": "a@example.com"}, headers=tenant.headers
    )
    assert response.status == 400
    assert "object" in (await response.json())["error"]["fields"]["mapping"]


async def test_a_forms_whole_numbers_are_integers_in_the_api(
    client: Client, tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback",
        data={"email": "n@example.com", "form_completion_percent": "80",
              "estimated_value": "-0", "custom_data[big]": "1"},
        headers=tenant.headers,
    )  # fmt: skip
    raw = await response.read()
    assert b'"form_completion_percent":80,' in raw
    assert b'"estimated_value":0,' in raw
