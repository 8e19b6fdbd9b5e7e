"""The endpoints API: register, list, change, delete, rotate the secret, send a test event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from gateway.appkeys import CIPHER, POOL, PRINCIPAL, SETTINGS
from gateway.changes import run_change
from gateway.endpoints import sql
from gateway.endpoints.models import (
    EndpointCreatedResponse,
    EndpointIn,
    EndpointList,
    EndpointPatch,
    EndpointResponse,
    RotateSecret,
    SecretResponse,
    TestSent,
)
from gateway.endpoints.store import (
    EndpointRefused,
    changed_signing,
    check_url,
    endpoint_json,
    insert_endpoint,
    new_signing,
    shown_key,
)
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.events import Event, Tx
from gateway.http import body_fields, json_response, read_body, validate
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.signing import Signature, generate_secret

TEST_EVENT = "endpoint.test"


def _refused(e: EndpointRefused) -> InvalidRequest:
    return InvalidRequest(str(e), fields={e.field: e.reason})


async def _json(request: web.Request) -> Any:
    return await body_fields(request, await read_body(request))


@requires("manage")
async def create_endpoint(request: web.Request) -> web.Response:
    body = await read_body(request)
    spec = validate(EndpointIn, await body_fields(request, body))
    try:
        # Resolved before the transaction: a slow DNS answer holds no batch.
        await check_url(spec.url, allow_private=request.app[SETTINGS].allow_private_destinations)
    except EndpointRefused as e:
        raise _refused(e) from e

    async def change(tx: Tx) -> web.Response:
        try:
            endpoint = await insert_endpoint(tx.conn, tx.tenant_id, spec, request.app[CIPHER])
        except EndpointRefused as e:
            raise _refused(e) from e
        return json_response({"data": endpoint}, status=201)

    # A replay answers the same endpoint with the same secret, stored encrypted.
    return await run_change(request, body, change, sealed=True)


@requires("read")
async def list_endpoints(request: web.Request) -> web.Response:
    rows = await request.app[POOL].fetch(sql.LIST_ENDPOINTS, request[PRINCIPAL].tenant_id)
    return json_response({"data": [endpoint_json(r) for r in rows]})


async def _endpoint(request: web.Request) -> asyncpg.Record:
    endpoint_id = request.match_info["endpoint_id"]
    row: asyncpg.Record | None = await request.app[POOL].fetchrow(
        sql.GET_ENDPOINT, endpoint_id, request[PRINCIPAL].tenant_id
    )
    if row is None:
        raise NotFound(f"no endpoint with id {endpoint_id!r}")
    return row


@requires("read")
async def get_endpoint(request: web.Request) -> web.Response:
    return json_response({"data": endpoint_json(await _endpoint(request))})


@requires("manage")
async def patch_endpoint(request: web.Request) -> web.Response:
    patch = validate(EndpointPatch, await _json(request))
    sent = patch.model_fields_set
    allow = request.app[SETTINGS].allow_private_destinations
    try:
        if patch.url is not None:
            await check_url(patch.url, allow_private=allow)
    except EndpointRefused as e:
        raise _refused(e) from e
    if "url" in sent and patch.url is None:
        raise InvalidRequest("url cannot be null", fields={"url": "cannot be null"})
    secret, public_key = None, None
    if patch.signature is not None or patch.secret is not None:
        current = await request.app[POOL].fetchrow(
            sql.GET_SIGNING, request.match_info["endpoint_id"], request[PRINCIPAL].tenant_id
        )
        if current is None:
            raise NotFound(f"no endpoint with id {request.match_info['endpoint_id']!r}")
        signature = patch.signature or Signature.model_validate(current["signature"])
        try:
            secret, public_key = changed_signing(
                current, signature, patch.secret, request.app[CIPHER]
            )
        except EndpointRefused as e:
            raise _refused(e) from e
    row = await request.app[POOL].fetchrow(
        sql.UPDATE_ENDPOINT,
        request.match_info["endpoint_id"],
        request[PRINCIPAL].tenant_id,
        patch.url,
        "description" in sent,
        patch.description,
        patch.event_types,
        patch.headers,
        "rate_limit" in sent,
        patch.rate_limit,
        patch.signature.stored() if patch.signature else None,
        patch.enabled,
        secret,
        public_key,
        patch.ordered,
        "template" in sent,
        patch.template,
    )
    if row is None:
        raise NotFound(f"no endpoint with id {request.match_info['endpoint_id']!r}")
    return json_response({"data": endpoint_json(row)})


@requires("manage")
async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = request.match_info["endpoint_id"]
    deleted = await request.app[POOL].fetchval(
        sql.DELETE_ENDPOINT, endpoint_id, request[PRINCIPAL].tenant_id
    )
    if deleted is None:
        raise NotFound(f"no endpoint with id {endpoint_id!r}")
    return json_response({"id": endpoint_id, "deleted": True})


@requires("manage")
async def rotate_secret(request: web.Request) -> web.Response:
    row = await _endpoint(request)
    body = await read_body(request)
    spec = validate(RotateSecret, await body_fields(request, body) if body else {})
    signature = Signature.model_validate(row["signature"])
    generated = generate_secret() if signature.scheme == "standard" else generate_secret()[6:]
    try:
        secret, public_key = new_signing(spec.secret, signature, generated)
    except EndpointRefused as e:
        raise _refused(e) from e
    encrypted = request.app[CIPHER].encrypt(secret)

    async def change(tx: Tx) -> web.Response:
        expires = await tx.conn.fetchval(
            sql.ROTATE_SECRET, row["id"], tx.tenant_id, encrypted, spec.grace_seconds, public_key
        )
        shown = {**shown_key(secret, public_key), "previous_secret_expires_at": expires}
        return json_response(shown)

    # A replay answers the same new secret and rotates nothing again.
    return await run_change(request, body, change, sealed=True)


@requires("manage")
async def send_test(request: web.Request) -> web.Response:
    """Send an `endpoint.test` event to this endpoint alone, whatever its event types."""
    row = await _endpoint(request)
    if not row["enabled"]:
        raise Conflict("the endpoint is disabled; enable it (PATCH enabled: true) to test it")
    data = {"endpoint_id": row["id"], "message": "A test event from Leadgate."}

    async def change(tx: Tx) -> web.Response:
        event = Event(TEST_EVENT, data, datetime.now(UTC))
        (event_id,) = await tx.emit(event, only_endpoint=row["id"])
        delivery_id = await tx.conn.fetchval(sql.DELIVERY_OF_EVENT, event_id)
        return json_response({"event_id": event_id, "delivery_id": delivery_id}, status=202)

    return await run_change(request, await read_body(request), change)


_PATH = "/v1/endpoints/{endpoint_id}"
OPERATIONS = [
    Operation("POST", "/v1/endpoints", create_endpoint, "Register a webhook endpoint",
              scope="manage", body=EndpointIn, response=EndpointCreatedResponse, statuses=(201,),
              errors=(400, 413, 415), tags=("endpoints",)),
    Operation("GET", "/v1/endpoints", list_endpoints, "List webhook endpoints", scope="read",
              response=EndpointList, tags=("endpoints",)),
    Operation("GET", _PATH, get_endpoint, "Get an endpoint", scope="read",
              response=EndpointResponse, errors=(404,), tags=("endpoints",)),
    Operation("PATCH", _PATH, patch_endpoint, "Change an endpoint", scope="manage",
              body=EndpointPatch, response=EndpointResponse, errors=(400, 404, 413, 415),
              tags=("endpoints",)),
    Operation("DELETE", _PATH, delete_endpoint, "Delete an endpoint and its deliveries",
              scope="manage", errors=(404,), tags=("endpoints",)),
    Operation("POST", f"{_PATH}/rotate-secret", rotate_secret, "Rotate the signing secret",
              scope="manage", body=RotateSecret, response=SecretResponse,
              errors=(400, 404, 413, 415), tags=("endpoints",)),
    Operation("POST", f"{_PATH}/test", send_test, "Send a test event", scope="manage",
              response=TestSent, statuses=(202,), errors=(404, 409), tags=("endpoints",)),
]  # fmt: skip
