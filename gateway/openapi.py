"""Routes as data, and the OpenAPI 3.1 document generated from them.

Each domain lists its `Operation`s: method, path, handler, the scope it needs, and the pydantic
models that validate its query and body and describe its response. `create_app` registers the
same list, so the document can only describe what the server does.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.constants import MAX_IDEMPOTENCY_KEY
from gateway.http import FORM_TYPE, JSON_TYPE
from gateway.middleware import Handler

_OK_TEXT = {200: "OK.", 201: "Created.", 202: "Accepted."}
_ERROR_TEXT = {
    400: "Invalid request: `error.fields` names each bad field.",
    401: "Missing or invalid API key.",
    403: "The API key lacks the scope this operation needs.",
    404: "No such object for this tenant.",
    409: "Conflict: a duplicate, or a request with this idempotency key is in progress.",
    413: "The body exceeds LEADGATE_MAX_BODY_BYTES.",
    415: "The Content-Type is neither JSON nor a url-encoded form.",
    422: "The idempotency key was used with a different request (`idempotency_key_reused`), or "
    "scoring rules that do not hold together (`invalid_rules`, `error.fields` names each).",
    429: "The API key's rate limit is spent (`rate_limited`), or a new lead is past the "
    "account's monthly quota (`quota_exceeded`); Retry-After says when to try again.",
}
# What an operation that honours Idempotency-Key may answer because of the key alone: a bad key
# (400), the same key still in flight (409), the key used before with another request (422).
_IDEMPOTENCY_ERRORS = {400, 409, 422}
IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
    "description": "Printable text. The request runs at most once per key (for 24 hours, "
    "per tenant); a retry with the same key replays the first response.",
}
# How an HTML form fills custom data: one field per key (`http.pairs_to_fields`).
CUSTOM_FIELD_PATTERN = r"^custom_data\[[^\]]+\]$"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    forms: bool = False  # the body may also be a url-encoded form
    # Honours Idempotency-Key (its change runs through run_change): every POST does, unless it
    # says otherwise.
    idempotent: bool | None = None
    response: type[BaseModel] | None = None
    statuses: tuple[int, ...] = (200,)
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    extra_parameters: tuple[dict[str, Any], ...] = ()
    operation_id: str | None = None  # when one handler serves two routes


_SCHEMA_REF = "#/components/schemas/"


class ErrorDetail(BaseModel):
    code: str
    message: str
    fields: dict[str, str] | None = None
    request_id: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def build_document(operations: list[Operation], version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for op in operations:
        models.update(m for m in (op.query, op.body, op.response) if m is not None)
    keyed: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (m, "validation") for m in sorted(models, key=lambda m: m.__name__)
    ]
    refs, defs = models_json_schema(keyed, ref_template=_SCHEMA_REF + "{model}")
    schemas = defs.get("$defs", {})
    forms = {op.body for op in operations if op.forms and op.body is not None}
    for model in sorted(forms, key=lambda m: m.__name__):
        schemas[form_schema_name(model)] = form_variant(schemas[model.__name__])

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return refs[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, ref, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Leadgate",
            "version": version,
            "description": "Deduplicated lead ingestion, and signed webhooks of every change.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def _operation(op: Operation, ref: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.operation_id or op.handler.__name__,
        "tags": list(op.tags),
        "parameters": [*_path_parameters(op.path), *op.extra_parameters],
        "responses": {},
    }
    if op.query is not None:
        doc["parameters"] += _query_parameters(schemas[op.query.__name__])
    if op.body is not None:
        content = {JSON_TYPE: {"schema": ref(op.body)}}
        if op.forms:
            content[FORM_TYPE] = {"schema": {"$ref": _SCHEMA_REF + form_schema_name(op.body)}}
        doc["requestBody"] = {"required": True, "content": content}
    for status in op.statuses:
        ok: dict[str, Any] = {"description": _OK_TEXT[status]}
        if op.response is not None:
            ok["content"] = {JSON_TYPE: {"schema": ref(op.response)}}
        doc["responses"][str(status)] = ok
    error_ref = ref(ErrorBody)
    idempotent = op.method == "POST" if op.idempotent is None else op.idempotent
    if idempotent:
        doc["parameters"].append(IDEMPOTENCY_PARAMETER)
    codes = set(op.errors) | ({401, 403, 429} if op.scope else set())
    codes |= _IDEMPOTENCY_ERRORS if idempotent else set()
    for code in sorted(codes):
        doc["responses"][str(code)] = {
            "description": _ERROR_TEXT[code],
            "content": {JSON_TYPE: {"schema": error_ref}},
        }
    if op.scope:
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
        doc["description"] = f"Needs an API key with the `{op.scope}` scope."
    return doc


def form_schema_name(model: type[BaseModel]) -> str:
    return f"{model.__name__}Form"


def form_variant(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON body's schema as an HTML form posts it: flat fields, custom data as
    `custom_data[key]` fields.

    The form gets a schema of its own, not the JSON body's: a generated client chooses the
    content type by the class of the body it is given, so one class for both would send every
    body as whichever content type it tests last.
    """
    form = copy.deepcopy(schema)
    form["title"] = f"{schema['title']}Form"
    custom = form["properties"].pop("custom_data", None)
    if custom is not None:
        text = {"type": "string", "description": custom.get("description", "")}
        form["patternProperties"] = {CUSTOM_FIELD_PATTERN: text}
    # A form has no null and no nested object, so an example that uses either is not a form's.
    examples = [e for e in form.pop("examples", ()) if all(_is_form_value(v) for v in e.values())]
    if examples:
        form["examples"] = examples
    return form


def _is_form_value(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        param["schema"] = {k: v for k, v in prop.items() if k not in ("title", "description")}
        if "description" in prop:
            param["description"] = prop["description"]
        if prop.get("type") == "array" or any(
            s.get("type") == "array" for s in prop.get("anyOf", ())
        ):
            param["explode"] = True
        params.append(param)
    return params
