"""The contract's error body `{"error": {code, message, fields?, request_id}}` on each non-2xx."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.keys import REVOKE_KEY
from gateway.settings import Settings
from tests.conftest import Tenant, TenantFactory

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
JSON = {"Content-Type": "application/json"}


async def error_of(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert the response is the contract's error body with `status` and `code`; return it."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) in (
        {"code", "message", "request_id"},
        {"code", "message", "fields", "request_id"},
    )
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["X-Request-Id"]
    return error


async def post_json(client: TestClient[Any, Any], tenant: Tenant, body: bytes) -> ClientResponse:
    return await client.post("/v1/postback", data=body, headers={**tenant.headers, **JSON})


async def test_malformed_json_is_400_invalid_request(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await post_json(client, tenant, b'{"email": "ada@example.com",')
    error = await error_of(response, 400, "invalid_request")
    assert error["message"].startswith("the body is not valid JSON")
    assert "fields" not in error


async def test_json_array_body_is_400(client: TestClient[Any, Any], tenant: Tenant) -> None:
    response = await post_json(client, tenant, b'[{"email": "ada@example.com"}]')
    error = await error_of(response, 400, "invalid_request")
    assert error["message"] == "the JSON body must be an object"


async def test_json_number_body_is_400(client: TestClient[Any, Any], tenant: Tenant) -> None:
    response = await post_json(client, tenant, b"42")
    error = await error_of(response, 400, "invalid_request")
    assert error["message"] == "the JSON body must be an object"


async def test_wrong_types_are_400_naming_each_bad_field(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    body = (
        b'{"email": "ada@example.com", "form_completion_percent": "lots", "custom_data": "x",'
        b' "force_stage": "maybe", "form_fields_total": -1}'
    )
    response = await post_json(client, tenant, body)
    error = await error_of(response, 400, "invalid_request")
    assert set(error["fields"]) == {
        "form_completion_percent",
        "custom_data",
        "force_stage",
        "form_fields_total",
    }


async def test_completion_percent_over_100_is_400_naming_it(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await post_json(
        client, tenant, b'{"email": "a@b.co", "form_completion_percent": 150}'
    )
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["form_completion_percent"]
    assert "100" in error["fields"]["form_completion_percent"]


async def test_invalid_email_and_phone_are_400_naming_both(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await post_json(client, tenant, b'{"email": "not-an-email", "phone": "call me"}')
    error = await error_of(response, 400, "invalid_request")
    assert set(error["fields"]) == {"email", "phone"}


async def test_invalid_email_is_400_naming_only_email(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await post_json(client, tenant, b'{"email": "ada@", "phone": "+14155550123"}')
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["email"]


async def test_empty_body_is_400(client: TestClient[Any, Any], tenant: Tenant) -> None:
    response = await post_json(client, tenant, b"")
    error = await error_of(response, 400, "invalid_request")
    assert error["message"] == "the request body is empty; send JSON or a form"


async def test_body_over_max_body_bytes_is_413_payload_too_large(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    tenant: Tenant,
) -> None:
    small = await aiohttp_client(create_app(settings.model_copy(update={"max_body_bytes": 2048})))
    body = b'{"email": "ada@example.com", "company": "' + b"x" * 4096 + b'"}'
    response = await small.post("/v1/postback", data=body, headers={**tenant.headers, **JSON})
    error = await error_of(response, 413, "payload_too_large")
    assert "2048" in error["message"]


async def test_body_within_max_body_bytes_is_accepted(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    settings: Settings,
    tenant: Tenant,
) -> None:
    small = await aiohttp_client(create_app(settings.model_copy(update={"max_body_bytes": 2048})))
    body = b'{"email": "ada@example.com", "company": "' + b"x" * 900 + b'"}'
    response = await small.post("/v1/postback", data=body, headers={**tenant.headers, **JSON})
    assert response.status == 201


async def test_text_plain_is_415_unsupported_media_type(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback",
        data=b"email=ada@example.com",
        headers={**tenant.headers, "Content-Type": "text/plain"},
    )
    error = await error_of(response, 415, "unsupported_media_type")
    assert "text/plain" in error["message"]


async def test_unknown_route_is_404_not_found(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/no-such-thing")
    await error_of(response, 404, "not_found")


async def test_wrong_method_is_405_with_allow_header(client: TestClient[Any, Any]) -> None:
    response = await client.put("/v1/postback", json={})
    await error_of(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed == {"GET", "POST"}


async def test_missing_key_is_401_unauthorized(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/postback", json={"email": "ada@example.com"})
    await error_of(response, 401, "unauthorized")


async def test_unknown_bearer_key_is_401(client: TestClient[Any, Any], tenant: Tenant) -> None:
    headers = {"Authorization": "Bearer lg_live_" + "x" * 43}
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=headers)
    await error_of(response, 401, "unauthorized")


async def test_unknown_x_api_key_is_401(client: TestClient[Any, Any], tenant: Tenant) -> None:
    headers = {"X-API-Key": tenant.key + "x"}
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=headers)
    await error_of(response, 401, "unauthorized")


async def test_basic_authorization_is_401_even_with_a_valid_key(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    headers = {"Authorization": f"Basic {tenant.key}"}
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=headers)
    await error_of(response, 401, "unauthorized")


async def test_key_lacking_scope_is_403_forbidden(
    client: TestClient[Any, Any], make_tenant: TenantFactory
) -> None:
    reader = await make_tenant("reader", scopes=("read",))
    response = await client.post("/v1/postback", json={"email": "a@b.co"}, headers=reader.headers)
    error = await error_of(response, 403, "forbidden")
    assert "ingest" in error["message"]


async def test_revoked_key_is_401(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    assert (await client.get("/v1/leads", headers=tenant.headers)).status == 200
    await conn.execute(REVOKE_KEY, tenant.key_id)
    response = await client.get("/v1/leads", headers=tenant.headers)
    await error_of(response, 401, "unauthorized")


async def test_raw_invalid_utf8_in_form_body_is_400(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback", data=b"email=ada\xff@example.com", headers={**tenant.headers, **FORM}
    )
    await error_of(response, 400, "invalid_request")


async def test_percent_encoded_invalid_utf8_in_form_body_is_400(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback", data=b"first_name=%C3%28&email=a%40b.co", headers={**tenant.headers, **FORM}
    )
    await error_of(response, 400, "invalid_request")


async def test_unknown_stage_is_400_listing_the_allowed_stages(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback", json={"email": "a@b.co", "stage": "bogus"}, headers=tenant.headers
    )
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["stage"]
    for stage in ("new", "contacted", "qualified", "proposal", "won", "lost"):
        assert stage in error["message"]
        assert stage in error["fields"]["stage"]


async def test_unknown_lead_id_in_postback_is_404_not_found(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.post(
        "/v1/postback", json={"lead_id": "lead_nope", "first_name": "Ada"}, headers=tenant.headers
    )
    await error_of(response, 404, "not_found")


async def test_unknown_lead_id_in_path_is_404_not_found(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.get("/v1/leads/lead_nope", headers=tenant.headers)
    await error_of(response, 404, "not_found")


async def test_bad_list_filter_is_400_naming_it(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.get("/v1/leads?limit=0&from=yesterday", headers=tenant.headers)
    error = await error_of(response, 400, "invalid_request")
    assert set(error["fields"]) == {"limit", "from"}


async def test_nul_character_in_a_field_is_400_naming_it(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await post_json(client, tenant, b'{"email": "a@b.co", "first_name": "Ada\\u0000"}')
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["first_name"]


async def test_nul_character_in_a_lead_id_path_is_404(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.get("/v1/leads/lead%00", headers=tenant.headers)
    await error_of(response, 404, "not_found")


async def test_count_beyond_the_stored_integer_range_is_400_naming_it(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    body = b'{"email": "a@b.co", "form_fields_completed": 2147483648}'
    response = await post_json(client, tenant, body)
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["form_fields_completed"]


async def test_date_filter_beyond_the_representable_range_is_400_naming_it(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    response = await client.get(
        "/v1/leads", params={"from": "9999-12-31T23:59:59-23:00"}, headers=tenant.headers
    )
    error = await error_of(response, 400, "invalid_request")
    assert list(error["fields"]) == ["from"]


async def test_rejected_postback_stores_no_lead_and_no_event(
    client: TestClient[Any, Any], tenant: Tenant, conn: asyncpg.Connection
) -> None:
    response = await post_json(client, tenant, b'{"email": "ada@example.com", "phone": "call me"}')
    await error_of(response, 400, "invalid_request")
    assert await conn.fetchval("SELECT count(*) FROM leads") == 0
    assert await conn.fetchval("SELECT count(*) FROM events") == 0
