"""No input, however malformed, yields a 5xx; every error is the contract's error body.

Each property throws generated requests at every route the app serves. The examples share one
database (each test starts it empty), and each example holds whatever state earlier ones left:
the properties hold for any state, so no example depends on another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from gateway.app import OPERATIONS
from tests.conftest import Tenant

EXAMPLES = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Well-typed bodies get furthest into the gateway, so they get the most examples.
THOROUGH = settings(EXAMPLES, max_examples=300)

ROUTES = sorted(
    {(op.method, op.path) for op in OPERATIONS}
    | {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/v1/openapi.json")}
)
BODY_OPERATIONS = [op for op in OPERATIONS if op.body is not None]
FORM_OPERATIONS = [op for op in BODY_OPERATIONS if op.forms]
PATH_OPERATIONS = [op for op in OPERATIONS if "{" in op.path]
METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT")
QUERY_NAMES = sorted(
    {name for op in OPERATIONS if op.query for name in op.query.model_fields}
    | {"from", "api_key", "custom.vertical", "custom.", "limit", "offset", "cursor", "since"}
)
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "",
)

# What aiohttp's client will put in a header: no control characters, nothing beyond latin-1.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=("Cc",)),
    max_size=60,
)
# Characters that trip databases, LIKE patterns, URL and JSON handling, favoured over the rest.
SPECIALS = ("\x00", "%", "_", "\\", "'", '"', "\u00e9", "\u2028", "\U0001f600", "\ufeff", "@", "+")
text = st.text(st.characters(codec="utf-8") | st.sampled_from(SPECIALS), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-0", "null", "", " ", "0x1F"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
clean_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
clean_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(clean_text, inner, max_size=4),
    max_leaves=12,
)
raw_json = st.sampled_from(
    [b'{"email": NaN}', b'{"estimated_value": Infinity}', b'{"email": "\\ud800"}',
     b'{"a": 1, "a": 2}', b"\xef\xbb\xbf{}", b'{"custom_data": {"x": 1e400}}', b"{" * 600]
)  # fmt: skip
timestamps = st.builds(
    lambda moment, offset: moment.isoformat() + offset,
    st.datetimes(),
    st.sampled_from(["", "Z", "+14:00", "-23:59"]),
)
query_pairs = st.lists(
    st.tuples(st.sampled_from(QUERY_NAMES) | text, text | timestamps | st.integers().map(str)),
    max_size=6,
)
path_text = text.filter(bool)


def auth_headers(tenant: Tenant) -> st.SearchStrategy[dict[str, str]]:
    return st.sampled_from(
        [{}, tenant.headers, {"X-API-Key": tenant.key}, {"Authorization": "Bearer lg_live_nope"}]
    ) | st.builds(lambda v: {"Authorization": v}, header_text)


def extra_headers() -> st.SearchStrategy[dict[str, str]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "Idempotency-Key": header_text,
            "X-Idempotency-Key": header_text,
            "X-Request-Id": header_text,
            "X-API-Key": header_text,
        },
    )


def fill_path(path: str, value: str) -> str:
    """The route's path with each `{param}` replaced by `value`, percent-encoded."""
    parts = path.split("/")
    return "/".join(quote(value, safe="") if p.startswith("{") else p for p in parts)


async def assert_no_server_error(response: ClientResponse) -> None:
    """Below 500, and every non-2xx is `{"error": {code, message, fields?, request_id}}`."""
    raw = await response.read()
    assert response.status < 500, raw[:500]
    if 200 <= response.status < 300:
        return
    assert response.content_type == "application/json", raw[:500]
    body = json.loads(raw)
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) - {"fields"} == {"code", "message", "request_id"}, body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert error["request_id"] == response.headers["X-Request-Id"], body


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Thousands of requests: their log events are kept in memory rather than rendered."""
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture
async def lead_id(client: TestClient[Any, Any], tenant: Tenant) -> str:
    response = await client.post(
        "/v1/postback", json={"email": "ada@example.com"}, headers=tenant.headers
    )
    assert response.status == 201
    value: str = (await response.json())["data"]["id"]
    return value


# Values of the declared JSON type and bounds, of any size and text, pass validation and
# reach the database; a few names get values that pass their own checks too.
_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "email": st.emails(),
    "phone": st.sampled_from(["+14155550123", "+1 (415) 555-0124", "+44 20 7946 0958"]),
    "url": st.sampled_from(["http://93.184.216.34/hook", "http://127.0.0.1:9/hook"]),
    "stage": st.sampled_from(["new", "Contacted", " won ", "lost"]),
}


def _of_subschema(schema: dict[str, Any]) -> st.SearchStrategy[Any] | None:
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return timestamps if schema.get("format") == "date-time" else clean_text | timestamps
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    by_type: dict[str, st.SearchStrategy[Any]] = {
        "integer": st.integers(min_value=low, max_value=high),
        "number": st.integers(min_value=low, max_value=high)
        | st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False),
        "boolean": st.booleans(),
        "object": st.dictionaries(clean_text, clean_json, max_size=4),
        "array": st.lists(clean_text, max_size=4),
    }
    return by_type.get(kind or "")


def _typed(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    options = [o for s in schema.get("anyOf", [schema]) if (o := _of_subschema(s)) is not None]
    return st.one_of(options) if options else clean_json


def well_typed_objects(
    model: type[BaseModel], **names: st.SearchStrategy[Any]
) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose fields each hold a value of their declared type and bounds, NUL-free."""
    schema = model.model_json_schema()
    properties = schema["properties"]
    fields = {name: _typed(prop) for name, prop in properties.items()}
    fields.update({n: v for n, v in {**_BY_NAME, **names}.items() if n in properties})
    required = set(schema.get("required", ()))
    return st.fixed_dictionaries(
        {n: v for n, v in fields.items() if n in required},
        optional={n: v for n, v in fields.items() if n not in required},
    )


def path_values(lead_id: str) -> st.SearchStrategy[str]:
    """A path parameter: sometimes a lead that exists, mostly anything at all."""
    return st.just(lead_id) | path_text


@EXAMPLES
@given(data=st.data())
async def test_any_json_object_on_any_body_route_never_yields_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, lead_id: str, data: st.DataObject
) -> None:
    op = data.draw(st.sampled_from(BODY_OPERATIONS))
    names = st.sampled_from(sorted(op.body.model_fields)) | text
    body = data.draw(st.dictionaries(names, json_values, max_size=8))
    response = await client.request(
        op.method,
        fill_path(op.path, data.draw(path_values(lead_id))),
        data=json.dumps(body),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    await assert_no_server_error(response)


@THOROUGH
@given(data=st.data())
async def test_any_well_typed_body_never_yields_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, lead_id: str, data: st.DataObject
) -> None:
    op = data.draw(st.sampled_from(BODY_OPERATIONS))
    body = data.draw(well_typed_objects(op.body, lead_id=st.just(lead_id)))
    response = await client.request(
        op.method,
        fill_path(op.path, data.draw(path_values(lead_id))),
        data=json.dumps(body),
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    await assert_no_server_error(response)


@EXAMPLES
@given(data=st.data())
async def test_any_json_value_with_any_method_never_yields_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, lead_id: str, data: st.DataObject
) -> None:
    _, path = data.draw(st.sampled_from(ROUTES))
    method = data.draw(st.sampled_from(METHODS))
    body = data.draw(st.builds(lambda v: json.dumps(v).encode(), json_values) | raw_json)
    headers = {
        **data.draw(auth_headers(tenant)),
        "Content-Type": data.draw(st.sampled_from(CONTENT_TYPES)),
    }
    response = await client.request(
        method, fill_path(path, data.draw(path_values(lead_id))), data=body, headers=headers
    )
    await assert_no_server_error(response)


@EXAMPLES
@given(data=st.data())
async def test_any_bytes_and_headers_on_any_route_never_yield_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, lead_id: str, data: st.DataObject
) -> None:
    route_method, path = data.draw(st.sampled_from(ROUTES))
    method = data.draw(st.sampled_from((route_method, *METHODS)))
    headers = {
        **data.draw(auth_headers(tenant)),
        **data.draw(extra_headers()),
        "Content-Type": data.draw(st.sampled_from(CONTENT_TYPES) | header_text),
    }
    body = data.draw(st.binary(max_size=300))
    response = await client.request(
        method, fill_path(path, data.draw(path_values(lead_id))), data=body, headers=headers
    )
    await assert_no_server_error(response)


@EXAMPLES
@given(data=st.data())
async def test_any_form_body_never_yields_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, lead_id: str, data: st.DataObject
) -> None:
    op = data.draw(st.sampled_from(FORM_OPERATIONS))
    pairs = st.lists(
        st.tuples(st.sampled_from(sorted(op.body.model_fields)) | text, text), max_size=8
    )
    body = data.draw(
        st.builds(lambda p: urlencode(p).encode(), pairs)
        | st.builds(lambda t: t.encode(), text)
        | st.binary(max_size=120)
    )
    headers = {
        **tenant.headers,
        **data.draw(extra_headers()),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = await client.request(
        op.method, fill_path(op.path, data.draw(path_values(lead_id))), data=body, headers=headers
    )
    await assert_no_server_error(response)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_any_query_string_never_yields_a_server_error(
    client: TestClient[Any, Any],
    tenant: Tenant,
    lead_id: str,
    method: str,
    path: str,
    data: st.DataObject,
) -> None:
    query = data.draw(query_pairs)
    headers = data.draw(st.just(tenant.headers) | auth_headers(tenant))
    response = await client.request(
        method, fill_path(path, data.draw(path_values(lead_id))), params=query, headers=headers
    )
    await assert_no_server_error(response)


@EXAMPLES
@given(data=st.data())
async def test_any_path_parameter_never_yields_a_server_error(
    client: TestClient[Any, Any], tenant: Tenant, data: st.DataObject
) -> None:
    op = data.draw(st.sampled_from(PATH_OPERATIONS))
    response = await client.request(
        op.method, fill_path(op.path, data.draw(path_text)), json={}, headers=tenant.headers
    )
    await assert_no_server_error(response)
