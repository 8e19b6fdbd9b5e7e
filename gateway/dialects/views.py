"""The dialects API: sender mappings, the template preview, and mapping a postback's fields."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import jsonio
from gateway.appkeys import MAPPED_BY, MAPPINGS, POOL, PRINCIPAL
from gateway.changes import answer, run_change
from gateway.dialects import mappings
from gateway.dialects.mappings import MappingFailed, mapping_json
from gateway.dialects.models import (
    MappingDeleted,
    MappingIn,
    MappingList,
    MappingPatch,
    MappingResponse,
    TemplatePreview,
    TemplatePreviewIn,
)
from gateway.dialects.templates import SAMPLE_EVENT, TemplateError, render_value
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.events import Tx
from gateway.http import body_fields, json_response, read_body, validate
from gateway.middleware import requires
from gateway.openapi import Operation

MAPPING_PARAMETER = "mapping"


async def mapped_fields(request: web.Request, fields: dict[str, Any]) -> dict[str, Any]:
    """A postback's fields as its mapping makes them (`?mapping=` or the key's default).

    Without a mapping the fields are returned as they are. A GET postback's `mapping` query
    parameter chooses the mapping and is not itself a field."""
    if request.method == "GET":
        fields = {k: v for k, v in fields.items() if k != MAPPING_PARAMETER}
    who = request[PRINCIPAL]
    name = request.query.get(MAPPING_PARAMETER) or who.mapping
    if not name:
        return fields
    cache = request.app[MAPPINGS]
    expression = await cache.expression(request.app[POOL], who.tenant_id, name)
    if expression is None:
        raise InvalidRequest(
            f"no mapping named {name!r}", fields={MAPPING_PARAMETER: "no such mapping"}
        )
    request[MAPPED_BY] = name
    try:
        return mappings.apply(expression, fields)
    except MappingFailed as e:
        raise InvalidRequest(
            f"mapping {name!r} failed on this body: {e}", fields={MAPPING_PARAMETER: str(e)}
        ) from e


async def _fields(request: web.Request) -> tuple[bytes, Any]:
    body = await read_body(request)
    return body, await body_fields(request, body)


def _not_found(name: str) -> NotFound:
    return NotFound(f"no mapping named {name!r}")


@requires("manage")
async def create_mapping(request: web.Request) -> web.Response:
    body, fields = await _fields(request)
    spec = validate(MappingIn, fields)

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(
            mappings.CREATE_MAPPING, tx.tenant_id, spec.name, spec.expression, spec.description
        )
        if row is None:
            raise Conflict(
                f"a mapping named {spec.name!r} exists; PATCH it to change it",
                fields={"name": "already used by another mapping"},
            )
        return json_response({"data": mapping_json(row)}, status=201)

    response = await run_change(request, body, change)
    request.app[MAPPINGS].forget(request[PRINCIPAL].tenant_id, spec.name)
    return response


@requires("read")
async def list_mappings(request: web.Request) -> web.Response:
    rows = await request.app[POOL].fetch(mappings.LIST_MAPPINGS, request[PRINCIPAL].tenant_id)
    return json_response({"data": [mapping_json(r) for r in rows]})


@requires("read")
async def get_mapping(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    row = await request.app[POOL].fetchrow(mappings.GET_MAPPING, request[PRINCIPAL].tenant_id, name)
    if row is None:
        raise _not_found(name)
    return json_response({"data": mapping_json(row)})


@requires("manage")
async def patch_mapping(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    body, fields = await _fields(request)
    patch = validate(MappingPatch, fields)
    if "expression" in patch.model_fields_set and patch.expression is None:
        raise InvalidRequest("expression cannot be null", fields={"expression": "cannot be null"})

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(
            mappings.UPDATE_MAPPING,
            tx.tenant_id,
            name,
            patch.expression,
            "description" in patch.model_fields_set,
            patch.description,
        )
        if row is None:
            raise _not_found(name)
        return json_response({"data": mapping_json(row)})

    response = await run_change(request, body, change)
    request.app[MAPPINGS].forget(request[PRINCIPAL].tenant_id, name)
    return response


@requires("manage")
async def delete_mapping(request: web.Request) -> web.Response:
    name = request.match_info["name"]

    async def change(tx: Tx) -> web.Response:
        keys = await tx.conn.fetch(mappings.KEYS_USING, tx.tenant_id, name)
        if keys:
            ids = ", ".join(k["id"] for k in keys)
            raise Conflict(
                f"API keys {ids} post through mapping {name!r} by default; revoke them first",
                fields={"name": "in use by API keys"},
            )
        if await tx.conn.fetchval(mappings.DELETE_MAPPING, tx.tenant_id, name) is None:
            raise _not_found(name)
        return json_response({"name": name, "deleted": True})

    response = await run_change(request, b"", change, idempotent=False)
    request.app[MAPPINGS].forget(request[PRINCIPAL].tenant_id, name)
    return response


@requires("manage")
async def preview_template(request: web.Request) -> web.Response:
    """What a template makes of an event (a sample lead.created unless one is given)."""
    body, fields = await _fields(request)
    spec = validate(TemplatePreviewIn, fields)
    event = spec.event if spec.event is not None else SAMPLE_EVENT
    try:
        rendered = render_value(event, spec.template)
    except TemplateError as e:
        raise InvalidRequest(
            f"the template failed on this event: {e}", fields={"template": str(e)}
        ) from e
    shown = json_response(
        {"body": rendered.decode(), "result": jsonio.loads(rendered), "event": event}
    )
    # It changes nothing; through the write path only so that an Idempotency-Key replays it.
    return await run_change(request, body, answer(shown))


_PATH = "/v1/mappings/{name}"
OPERATIONS = [
    Operation("POST", "/v1/mappings", create_mapping, "Create a sender mapping", scope="manage",
              body=MappingIn, response=MappingResponse, statuses=(201,),
              errors=(400, 409, 413, 415, 422), tags=("mappings",)),
    Operation("GET", "/v1/mappings", list_mappings, "List sender mappings", scope="read",
              response=MappingList, tags=("mappings",)),
    Operation("GET", _PATH, get_mapping, "Get a sender mapping", scope="read",
              response=MappingResponse, errors=(404,), tags=("mappings",)),
    Operation("PATCH", _PATH, patch_mapping, "Change a sender mapping", scope="manage",
              body=MappingPatch, response=MappingResponse, errors=(400, 404, 413, 415, 422),
              tags=("mappings",)),
    Operation("DELETE", _PATH, delete_mapping, "Delete a sender mapping no key uses",
              scope="manage", response=MappingDeleted, errors=(404, 409), tags=("mappings",)),
    Operation("POST", "/v1/templates/preview", preview_template,
              "Render a payload template on an event", scope="manage", body=TemplatePreviewIn,
              response=TemplatePreview, errors=(400, 413, 415), tags=("endpoints",)),
]  # fmt: skip
