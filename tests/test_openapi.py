"""`GET /v1/openapi.json`: OpenAPI 3.1, generated from the models that validate requests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from pydantic import BaseModel

from gateway.app import OPERATIONS
from gateway.leads.models import IngestResponse, LeadPatch, LeadResponse, PostbackIn
from gateway.openapi import ErrorBody
from tests.conftest import Tenant

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
FORM = "application/x-www-form-urlencoded"
SCOPED = [op for op in OPERATIONS if op.scope]
# Served outside OPERATIONS; the document may describe them too, and nothing else.
UNSCOPED_ROUTES = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v1/openapi.json")}


async def document(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get("/v1/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    doc: dict[str, Any] = await response.json()
    return doc


def conforms(doc: dict[str, Any], schema_name: str, instance: Any) -> list[str]:
    """The errors of `instance` against a component schema of the served document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    validator = Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


async def test_openapi_is_3_1_and_needs_no_key(client: TestClient[Any, Any]) -> None:
    doc = await document(client)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "Leadgate"


async def test_openapi_lists_every_operation_the_app_serves(client: TestClient[Any, Any]) -> None:
    doc = await document(client)
    listed = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {(op.method, op.path) for op in OPERATIONS}
    assert served - listed == set()
    assert listed - served <= UNSCOPED_ROUTES


async def test_openapi_operation_ids_are_unique(client: TestClient[Any, Any]) -> None:
    doc = await document(client)
    ids = Counter(op["operationId"] for ops in doc["paths"].values() for op in ops.values())
    assert {name: n for name, n in ids.items() if n > 1} == {}


@pytest.mark.parametrize("op", SCOPED, ids=[f"{op.method} {op.path}" for op in SCOPED])
async def test_scoped_operation_declares_401_and_403_with_the_error_schema(
    client: TestClient[Any, Any], op: Any
) -> None:
    doc = await document(client)
    described = doc["paths"][op.path][op.method.lower()]
    for status in ("401", "403"):
        assert described["responses"][status]["content"]["application/json"]["schema"] == ERROR_REF
    assert described["security"] == [{"bearer": []}, {"apiKey": []}]


async def test_error_schema_is_generated_from_the_error_model(
    client: TestClient[Any, Any],
) -> None:
    doc = await document(client)
    expected = ErrorBody.model_json_schema(ref_template=REF_TEMPLATE)
    nested = expected.pop("$defs")
    assert doc["components"]["schemas"]["ErrorBody"] == expected
    for name, schema in nested.items():
        assert doc["components"]["schemas"][name] == schema


async def test_postback_body_schema_is_generated_from_postback_model(
    client: TestClient[Any, Any],
) -> None:
    doc = await document(client)
    request_body = doc["paths"]["/v1/postback"]["post"]["requestBody"]["content"]
    assert request_body["application/json"]["schema"] == {"$ref": "#/components/schemas/PostbackIn"}
    component = doc["components"]["schemas"]["PostbackIn"]
    assert component == PostbackIn.model_json_schema(ref_template=REF_TEMPLATE)
    assert set(component["properties"]) == set(PostbackIn.model_fields)


@pytest.mark.parametrize("model", [PostbackIn, LeadPatch], ids=lambda m: m.__name__)
async def test_a_form_body_has_its_own_schema_with_custom_data_as_bracketed_fields(
    client: TestClient[Any, Any], model: type[BaseModel]
) -> None:
    doc = await document(client)
    name = model.__name__
    json_schema, form = (doc["components"]["schemas"][n] for n in (name, f"{name}Form"))
    assert set(form["properties"]) == set(json_schema["properties"]) - {"custom_data"}
    assert form["additionalProperties"] == json_schema["additionalProperties"]
    assert conforms(doc, f"{name}Form", {"stage": "won", "custom_data[plan]": "pro"}) == []
    assert conforms(doc, f"{name}Form", {"custom_data[plan]": 3}) != []
    bodies = [
        op["requestBody"]["content"]
        for ops in doc["paths"].values()
        for op in ops.values()
        if FORM in op.get("requestBody", {}).get("content", {})
    ]
    mine = [c[FORM] for c in bodies if c["application/json"]["schema"]["$ref"].endswith(f"/{name}")]
    assert mine and all(f["schema"] == {"$ref": f"#/components/schemas/{name}Form"} for f in mine)


IDEMPOTENT = [op for op in OPERATIONS if op.idempotent]


@pytest.mark.parametrize("op", IDEMPOTENT, ids=[f"{op.method} {op.path}" for op in IDEMPOTENT])
async def test_an_operation_that_honours_idempotency_keys_declares_the_header(
    client: TestClient[Any, Any], op: Any
) -> None:
    doc = await document(client)
    described = doc["paths"][op.path][op.method.lower()]
    headers = [p for p in described["parameters"] if p["in"] == "header"]
    assert [(p["name"], p["required"]) for p in headers] == [("Idempotency-Key", False)]
    assert {"400", "409", "422"} <= set(described["responses"])


async def test_openapi_document_is_a_valid_openapi_3_1_spec(client: TestClient[Any, Any]) -> None:
    errors = OpenAPIV31SpecValidator(await document(client)).iter_errors()
    assert [f"{type(e).__name__}: {e}" for e in errors] == []


async def test_real_postback_response_conforms_to_ingest_response(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    doc = await document(client)
    response = await client.post(
        "/v1/postback",
        json={"email": "ada@example.com", "first_name": "Ada", "vertical": "solar"},
        headers=tenant.headers,
    )
    assert response.status == 201
    body = await response.json()
    parsed = IngestResponse.model_validate(body)
    assert (parsed.created, parsed.data.email, parsed.data.custom_data) == (
        True,
        "ada@example.com",
        {"vertical": "solar"},
    )
    assert conforms(doc, "IngestResponse", body) == []


async def test_real_lead_response_conforms_to_lead_response(
    client: TestClient[Any, Any], tenant: Tenant
) -> None:
    doc = await document(client)
    created = await client.post(
        "/v1/postback",
        json={"email": "ada@example.com", "stage": "contacted"},
        headers=tenant.headers,
    )
    lead_id = (await created.json())["data"]["id"]
    response = await client.get(f"/v1/leads/{lead_id}", headers=tenant.headers)
    assert response.status == 200
    body = await response.json()
    parsed = LeadResponse.model_validate(body)
    assert parsed.data.id == lead_id
    assert [(c.from_stage, c.to_stage) for c in parsed.data.stage_history] == [(None, "contacted")]
    assert conforms(doc, "LeadResponse", body) == []


async def test_real_error_response_conforms_to_error_body(client: TestClient[Any, Any]) -> None:
    doc = await document(client)
    response = await client.post("/v1/postback", json={"email": "ada@example.com"})
    assert response.status == 401
    body = await response.json()
    ErrorBody.model_validate(body)
    assert conforms(doc, "ErrorBody", body) == []
