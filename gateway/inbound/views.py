"""Inbound sources (register, list, delete) and `POST /v1/inbound/{source}`.

An inbound request is verified first: a bad, missing or stale signature is a 401 and nothing is
stored. Then, in one transaction, the event is stored once (a resent id changes nothing and is
answered 200 at once), linked to a lead by `lead_id`, email or phone, and fanned out under its
own type. An event whose type ends in `.opt_out` marks the lead opted out and cancels every
pending delivery of it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from gateway import jsonio
from gateway.appkeys import CIPHER, POOL, PRINCIPAL, SETTINGS
from gateway.changes import run_change
from gateway.constants import INBOUND_PREFIX
from gateway.crypto import Cipher
from gateway.db import Conn
from gateway.deliveries.sql import STOP_LEAD
from gateway.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from gateway.events import Event, Tx
from gateway.http import body_fields, json_response, read_body, validate
from gateway.ids import new_id
from gateway.inbound import sql
from gateway.inbound.models import (
    InboundEvent,
    InboundResponse,
    SourceCreatedResponse,
    SourceIn,
    SourceList,
    SourceResponse,
)
from gateway.leads.normalize import InvalidValue, normalize_email, normalize_phone
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.scoring.store import rescore_lead
from gateway.signing import BadSignature, check_verify_key, generate_secret, verify

OPT_OUT_SUFFIX = ".opt_out"


def source_json(row: asyncpg.Record) -> dict[str, Any]:
    return {k: row[k] for k in ("name", "signature", "tolerance_seconds", "created_at")}


async def add_source(
    conn: Conn | asyncpg.Pool, tenant_id: str, spec: SourceIn, cipher: Cipher
) -> dict[str, Any]:
    """Register a source (API and CLI); its secret is returned here and never again.

    For ed25519 the secret is the provider's public key (`whpk_…`), so it must be given.
    """
    if spec.signature.scheme == "ed25519" and spec.secret is None:
        raise InvalidRequest(
            "secret: an ed25519 source needs the provider's public key (whpk_…)",
            fields={"secret": "required for ed25519"},
        )
    secret = spec.secret or generate_secret()
    try:
        check_verify_key(secret, spec.signature)
    except ValueError as e:
        raise InvalidRequest(f"secret: {e}", fields={"secret": str(e)}) from e
    row = await conn.fetchrow(
        sql.CREATE_SOURCE,
        tenant_id,
        spec.name,
        cipher.encrypt(secret),
        spec.signature.stored(),
        spec.tolerance_seconds,
    )
    if row is None:
        raise Conflict(f"a source named {spec.name!r} exists", fields={"name": "taken"})
    return {**source_json(row), "secret": secret}


@requires("manage")
async def create_source(request: web.Request) -> web.Response:
    body = await read_body(request)
    spec = validate(SourceIn, await body_fields(request, body))

    async def change(tx: Tx) -> web.Response:
        source = await add_source(tx.conn, tx.tenant_id, spec, request.app[CIPHER])
        return json_response({"data": source}, status=201)

    # A replay answers the same source and secret, stored encrypted.
    return await run_change(request, body, change, sealed=True)


@requires("read")
async def list_sources(request: web.Request) -> web.Response:
    rows = await request.app[POOL].fetch(sql.LIST_SOURCES, request[PRINCIPAL].tenant_id)
    return json_response({"data": [source_json(r) for r in rows]})


async def _source(request: web.Request) -> asyncpg.Record:
    name = request.match_info["source"]
    row: asyncpg.Record | None = await request.app[POOL].fetchrow(
        sql.GET_SOURCE, request[PRINCIPAL].tenant_id, name
    )
    if row is None:
        raise NotFound(f"no source named {name!r}")
    return row


@requires("read")
async def get_source(request: web.Request) -> web.Response:
    return json_response({"data": source_json(await _source(request))})


@requires("manage")
async def delete_source(request: web.Request) -> web.Response:
    name = request.match_info["source"]
    if not await request.app[POOL].fetchval(sql.DELETE_SOURCE, request[PRINCIPAL].tenant_id, name):
        raise NotFound(f"no source named {name!r}")
    return json_response({"name": name, "deleted": True})


def _parse(request: web.Request, body: bytes) -> tuple[InboundEvent, dict[str, Any], str, str]:
    """The event, its raw JSON, its id and its type; 400 when any is missing or malformed."""
    try:
        raw = jsonio.loads(body)
    except jsonio.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidRequest("the JSON body must be an object")
    event = validate(InboundEvent, raw)
    event_id = event.id or request.headers.get("webhook-id")
    if not event_id:
        raise InvalidRequest("the event needs an id: `id` in the body or a webhook-id header",
                             fields={"id": "required"})  # fmt: skip
    kind = event.type or event.event
    if not kind:
        raise InvalidRequest("the event needs a `type`", fields={"type": "required"})
    if event.type is None:
        validate(InboundEvent, {"type": kind})  # `event` must be a type too
    return event, raw, event_id, kind


async def _link(conn: Conn, tenant_id: str, event: InboundEvent, region: str | None) -> Any:
    email = phone = None
    try:
        email = normalize_email(event.email) if event.email else None
        phone = normalize_phone(event.phone, region) if event.phone else None
    except InvalidValue:
        pass  # a provider's unparseable contact links nothing; the event is still kept
    if not (event.lead_id or email or phone):
        return None
    return await conn.fetchval(sql.FIND_LEAD, tenant_id, event.lead_id, email, phone)


@requires("ingest")
async def receive(request: web.Request) -> web.Response:
    source = await _source(request)
    body = await read_body(request)
    try:
        verify(
            source["signature"],
            request.app[CIPHER].decrypt_text(source["secret"]),
            request.headers,
            body,
            tolerance=source["tolerance_seconds"],
            now=time.time(),
        )
    except BadSignature as e:
        raise Unauthorized(f"signature check failed: {e}") from e
    event, raw, external_id, kind = _parse(request, body)
    who = request[PRINCIPAL]
    region = request.app[SETTINGS].default_phone_region
    name = source["name"]

    async def change(tx: Tx) -> web.Response:
        conn, now = tx.conn, datetime.now(UTC)
        lead_id = await _link(conn, who.tenant_id, event, region)
        text = body.decode("utf-8", errors="replace")
        stored_id = await conn.fetchval(
            sql.STORE_EVENT, new_id(INBOUND_PREFIX), who.tenant_id, name, external_id, kind,
            lead_id, text,
        )  # fmt: skip
        if stored_id is None:
            first: Any = await conn.fetchrow(sql.FIND_STORED, who.tenant_id, name, external_id)
            data = {"id": first["id"], "type": first["type"], "lead_id": first["lead_id"],
                    "duplicate": True}  # fmt: skip
            return json_response({"data": data})
        if lead_id is not None and kind.endswith(OPT_OUT_SUFFIX):
            await conn.execute(sql.OPT_OUT, lead_id, who.tenant_id, now)
            await conn.execute(STOP_LEAD, lead_id, who.tenant_id)
            if who.scoring is not None:  # rules may look at opted_out_at
                await rescore_lead(tx, lead_id, who.scoring, now)
        payload = {"source": name, "id": external_id, "lead_id": lead_id, "payload": raw}
        (event_id,) = await tx.emit(Event(kind, payload, now, lead_id))
        await conn.execute(sql.LINK_EVENT, stored_id, event_id)
        data = {"id": stored_id, "type": kind, "lead_id": lead_id, "duplicate": False}
        return json_response({"data": data}, status=201)

    # Deduplicated by the provider's event id; an Idempotency-Key, if a provider sends one,
    # replays as on every POST.
    return await run_change(request, body, change)


_SOURCE = "/v1/sources/{source}"
OPERATIONS = [
    Operation("POST", "/v1/sources", create_source, "Register an inbound source",
              scope="manage", body=SourceIn, response=SourceCreatedResponse, statuses=(201,),
              errors=(400, 409, 413, 415), tags=("inbound",)),
    Operation("GET", "/v1/sources", list_sources, "List inbound sources", scope="read",
              response=SourceList, tags=("inbound",)),
    Operation("GET", _SOURCE, get_source, "Get an inbound source", scope="read",
              response=SourceResponse, errors=(404,), tags=("inbound",)),
    Operation("DELETE", _SOURCE, delete_source, "Delete an inbound source", scope="manage",
              errors=(404,), tags=("inbound",)),
    Operation("POST", "/v1/inbound/{source}", receive, "Receive a provider's signed event",
              scope="ingest", body=InboundEvent, response=InboundResponse, statuses=(200, 201),
              errors=(400, 404, 413), tags=("inbound",)),
]  # fmt: skip
