"""Reading requests and writing responses: body parsing, model validation, JSON replies.

A lead may arrive as JSON, as an HTML form (`application/x-www-form-urlencoded`, where
`custom_data[key]=value` fills custom_data), or as query parameters on a GET postback. Whatever
the shape, malformed input ends here as a 4xx with the contract's error body.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from gateway import jsonio
from gateway.appkeys import SETTINGS
from gateway.dialects import jsjson
from gateway.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

M = TypeVar("M", bound=BaseModel)

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A JSON reply, its numbers written as the webhooks write them (a form's "80" is 80)."""
    return web.Response(body=jsjson.dumps(payload), status=status, content_type=JSON_TYPE)


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        limit = request.app[SETTINGS].max_body_bytes
        raise PayloadTooLarge(
            f"request body exceeds LEADGATE_MAX_BODY_BYTES ({limit} bytes)"
        ) from e


def pairs_to_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Form or query pairs to fields: last value wins, `custom_data[k]` nests into custom_data."""
    fields: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, value in pairs:
        if key.startswith("custom_data[") and key.endswith("]") and len(key) > 13:
            custom[key[12:-1]] = value
        else:
            fields[key] = value
    if custom:
        given = fields.get("custom_data")
        if isinstance(given, str):
            raise InvalidRequest(
                "custom_data cannot be both a value and bracketed keys",
                fields={"custom_data": "use custom_data[key]=value"},
            )
        fields["custom_data"] = custom
    return fields


def query_fields(query: MultiMapping[str]) -> dict[str, Any]:
    return pairs_to_fields(query.items())


def refuse_nul_query(query: MultiMapping[str]) -> None:
    refuse_nul({k: v for k, v in query.items()})


async def body_fields(request: web.Request, body: bytes) -> dict[str, Any]:
    """The body as a field mapping, whether JSON or a form; 400 or 415 when it is neither."""
    if not body:
        raise InvalidRequest("the request body is empty; send JSON or a form")
    ctype = request.content_type
    if ctype == JSON_TYPE or ctype.endswith("+json"):
        try:
            data = jsonio.loads(body)
        except jsonio.JSONDecodeError as e:
            raise InvalidRequest(f"the body is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise InvalidRequest("the JSON body must be an object")
        return data
    if ctype == FORM_TYPE:
        try:
            text = body.decode("utf-8")
            return pairs_to_fields(parse_qsl(text, keep_blank_values=True, errors="strict"))
        except (UnicodeDecodeError, ValueError) as e:
            raise InvalidRequest("the form body is not valid UTF-8 url-encoding") from e
    raise UnsupportedMediaType(
        f"Content-Type {ctype or '(none)'} is not supported; send {JSON_TYPE} or {FORM_TYPE}"
    )


NUL_MESSAGE = "must not contain NUL characters"


def nul_fields(data: Any, path: str = "") -> list[str]:
    """Where a NUL character hides in parsed input; Postgres text cannot store one."""
    if isinstance(data, str):
        return [path or "body"] if "\x00" in data else []
    if isinstance(data, dict):
        found = []
        for key, value in data.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                found.append(name)
            found += nul_fields(value, name)
        return found
    if isinstance(data, list):
        return [f for i, v in enumerate(data) for f in nul_fields(v, f"{path}.{i}")]
    return []


def refuse_nul(data: Any) -> None:
    if bad := nul_fields(data):
        raise InvalidRequest("text " + NUL_MESSAGE, fields=dict.fromkeys(bad, NUL_MESSAGE))


def validate(model: type[M], data: Any) -> M:
    """Validate into `model`; a 400 whose `fields` names each bad field and why."""
    refuse_nul(data)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InvalidRequest("some fields are missing or invalid", fields=field_errors(e)) from e


def field_errors(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"]) or "body"
        fields.setdefault(name, item["msg"])
    return fields
