"""The deals API: create, list, get, patch, delete; each change and its event in one transaction.

`title` is required; `currency` defaults to the tenant's (`leadgate tenants update ID
--currency EUR`); `lead_id` must be a live lead of the same tenant (else 404 naming it). A
change of nothing writes nothing and emits nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway import cursors
from gateway.appkeys import POOL, PRINCIPAL
from gateway.changes import run_change
from gateway.constants import DEAL_PREFIX
from gateway.db import Conn
from gateway.deals import sql
from gateway.deals.models import (
    DealDeleted,
    DealIn,
    DealListQuery,
    DealPage,
    DealPatch,
    DealResponse,
)
from gateway.deals.store import EDITABLE, change_events, deal_json
from gateway.errors import InvalidRequest, NotFound
from gateway.events import Event, Tx
from gateway.http import body_fields, json_response, read_body, validate
from gateway.ids import new_id
from gateway.middleware import requires
from gateway.openapi import Operation


async def _check_lead(conn: Conn, tenant_id: str, lead_id: str | None) -> None:
    if lead_id is not None and not await conn.fetchval(sql.LOCK_LEAD, lead_id, tenant_id):
        raise NotFound(f"no lead with id {lead_id!r}", fields={"lead_id": "no such lead"})


@requires("manage")
async def create_deal(request: web.Request) -> web.Response:
    body = await read_body(request)
    spec = validate(DealIn, await body_fields(request, body))
    custom = {k: v for k, v in (spec.custom_data or {}).items() if v is not None}

    async def change(tx: Tx) -> web.Response:
        await _check_lead(tx.conn, tx.tenant_id, spec.lead_id)
        now = datetime.now(UTC)
        row = await tx.conn.fetchrow(
            sql.INSERT_DEAL, new_id(DEAL_PREFIX), tx.tenant_id, spec.lead_id, spec.title,
            spec.value, spec.currency, spec.stage, spec.probability, custom, now,
        )  # fmt: skip
        assert row is not None  # the tenant exists: its key was just authenticated
        deal = deal_json(row)
        await tx.emit(Event("deal.created", deal, now, deal["lead_id"]))
        return json_response({"data": deal}, status=201)

    return await run_change(request, body, change)


def _list_query(request: web.Request) -> DealListQuery:
    plain: dict[str, Any] = {}
    for name, value in request.query.items():
        if name == "stage":
            plain.setdefault("stage", []).append(value)
        else:
            plain[name] = value
    return validate(DealListQuery, plain)


@requires("read")
async def list_deals(request: web.Request) -> web.Response:
    query = _list_query(request)
    filters = (
        request[PRINCIPAL].tenant_id,
        query.stage,
        query.min_value,
        query.max_value,
        query.lead_id,
    )
    after: tuple[datetime | None, str | None] = (None, None)
    offset = query.offset
    if query.cursor:
        created, deal_id = cursors.decode(query.cursor, 2)
        after, offset = (cursors.moment(created), cursors.text(deal_id)), 0
    pool = request.app[POOL]
    rows = await pool.fetch(sql.LIST_DEALS, *filters, *after, query.limit + 1, offset)
    total = await pool.fetchval(sql.COUNT_DEALS, *filters) if query.total else None
    deals = [deal_json(r) for r in rows[: query.limit]]
    last = deals[-1] if len(rows) > query.limit else None
    return json_response(
        {
            "data": deals,
            "total": total,
            "limit": query.limit,
            "offset": offset,
            "next_cursor": cursors.encode(last["created_at"], last["id"]) if last else None,
        }
    )


@requires("read")
async def get_deal(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    row = await request.app[POOL].fetchrow(sql.GET_DEAL, deal_id, request[PRINCIPAL].tenant_id)
    if row is None:
        raise NotFound(f"no deal with id {deal_id!r}")
    return json_response({"data": deal_json(row)})


def _patched(current: dict[str, Any], patch: DealPatch) -> dict[str, Any]:
    """The deal after `patch`: null clears a field, custom_data merges key by key."""
    sent = patch.model_fields_set
    for name in ("title", "currency"):
        if name in sent and getattr(patch, name) is None:
            raise InvalidRequest(f"{name} cannot be cleared", fields={name: "cannot be null"})
    merged = dict(current)
    for name in sent - {"custom_data"}:
        value = getattr(patch, name)
        merged[name] = float(value) if name == "value" and value is not None else value
    if "custom_data" in sent:
        custom = {**current["custom_data"], **patch.custom_data} if patch.custom_data else {}
        merged["custom_data"] = {k: v for k, v in custom.items() if v is not None}
    return merged


@requires("manage")
async def patch_deal(request: web.Request) -> web.Response:
    deal_id = request.match_info["deal_id"]
    body = await read_body(request)
    patch = validate(DealPatch, await body_fields(request, body))

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(sql.LOCK_DEAL, deal_id, tx.tenant_id)
        if row is None:
            raise NotFound(f"no deal with id {deal_id!r}")
        current = deal_json(row)
        merged = _patched(current, patch)
        changed = {c for c in EDITABLE if merged[c] != current[c]}
        if not changed:
            return json_response({"data": current})
        if "lead_id" in changed:
            await _check_lead(tx.conn, tx.tenant_id, merged["lead_id"])
        now = datetime.now(UTC)
        # The value as sent (exact), not as the JSON number the API shows.
        value = patch.value if "value" in patch.model_fields_set else row["value"]
        values = [value if c == "value" else merged[c] for c in EDITABLE]
        saved = await tx.conn.fetchrow(sql.UPDATE_DEAL, deal_id, tx.tenant_id, *values, now)
        assert saved is not None  # locked above
        deal = deal_json(saved)
        await tx.emit(*change_events(current, deal, changed, now))
        return json_response({"data": deal})

    return await run_change(request, body, change)


@requires("manage")
async def delete_deal(request: web.Request) -> web.Response:
    """Delete the deal; `deal.deleted` carries it as it was, with `"deleted": true`."""
    deal_id = request.match_info["deal_id"]

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(sql.DELETE_DEAL, deal_id, tx.tenant_id)
        if row is None:
            raise NotFound(f"no deal with id {deal_id!r}")
        deal = deal_json(row)
        now = datetime.now(UTC)
        await tx.emit(Event("deal.deleted", {**deal, "deleted": True}, now, deal["lead_id"]))
        return json_response({"id": deal_id, "deleted": True})

    return await run_change(request, b"", change, idempotent=False)


_DEAL = "/v1/deals/{deal_id}"
_WRITE_ERRORS = (400, 404, 409, 413, 415, 422)
OPERATIONS = [
    Operation("POST", "/v1/deals", create_deal, "Create a deal", scope="manage", body=DealIn,
              response=DealResponse, statuses=(201,), errors=_WRITE_ERRORS, tags=("deals",)),
    Operation("GET", "/v1/deals", list_deals, "List deals", scope="read", query=DealListQuery,
              response=DealPage, errors=(400,), tags=("deals",)),
    Operation("GET", _DEAL, get_deal, "Get a deal", scope="read", response=DealResponse,
              errors=(404,), tags=("deals",)),
    Operation("PATCH", _DEAL, patch_deal, "Change a deal", scope="manage", body=DealPatch,
              idempotent=True, response=DealResponse, errors=_WRITE_ERRORS, tags=("deals",)),
    Operation("DELETE", _DEAL, delete_deal, "Delete a deal", scope="manage",
              response=DealDeleted, errors=(404,), tags=("deals",)),
]  # fmt: skip
