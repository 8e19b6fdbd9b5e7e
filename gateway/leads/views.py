"""The leads API: postbacks and creates, list, get, patch, delete."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from gateway import idempotency, jsonio, metrics
from gateway.appkeys import POOL, PRINCIPAL, SETTINGS
from gateway.batcher import Outcome
from gateway.changes import run_batched, run_change
from gateway.db import Conn
from gateway.deals.store import deals_of_lead, unlink_lead
from gateway.deliveries.views import recent_deliveries
from gateway.dialects.views import mapped_fields
from gateway.errors import ApiError, InvalidRequest, NotFound
from gateway.events import Event, Tx
from gateway.http import body_fields, json_response, query_fields, read_body, validate
from gateway.keys import Principal
from gateway.leads import sql
from gateway.leads.ingest import (
    IngestResult,
    Postback,
    StageMove,
    lead_json,
    normalized_values,
    prepare,
    resolve_stage,
)
from gateway.leads.models import (
    DeletedResponse,
    IngestResponse,
    LeadFilters,
    LeadListQuery,
    LeadPage,
    LeadPatch,
    LeadResponse,
    PostbackIn,
    StageCounts,
)
from gateway.leads.optout import announce, set_opted_out
from gateway.leads.store import apply_postbacks, get_lead, patch_lock_ids, save_change
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.timeline import store as timeline
from gateway.timeline.models import RECENT

CUSTOM_FILTER_PREFIX = "custom."


def _ingest_response(result: IngestResult) -> web.Response:
    payload = {
        "data": result.lead,
        "created": result.created,
        "stage_ignored": result.stage_ignored,
    }
    return json_response(payload, status=201 if result.created else 200)


async def _apply_postbacks(
    conn: Conn, postbacks: list[Postback], now: datetime
) -> tuple[list[Outcome], list[tuple[int, Event]]]:
    """The batcher's set-based kind for postbacks: each answered with its own outcome."""
    plan = await apply_postbacks(conn, postbacks, now)
    outcomes = [o if isinstance(o, ApiError) else _ingest_response(o) for o in plan.outcomes]
    return outcomes, plan.events


async def _run_postback(request: web.Request, fields: dict[str, Any], body: bytes) -> web.Response:
    fields = await mapped_fields(request, fields)  # a sender's mapping (?mapping= or the key's)
    postback = validate(PostbackIn, fields)
    prepared = prepare(request[PRINCIPAL], postback, request.app[SETTINGS].default_phone_region)
    # A GET postback is a pixel: it carries no Idempotency-Key; matching deduplicates it.
    response = await run_batched(
        request,
        body,
        _apply_postbacks,
        prepared,
        idempotent=request.method == "POST",
        lock_ids=prepared.lock_ids(),
    )
    if response.headers.get(idempotency.REPLAYED_HEADER):
        metrics.INGEST.labels("replayed").inc()
    else:
        metrics.INGEST.labels("created" if response.status == 201 else "matched").inc()
    return response


@requires("ingest")
async def post_postback(request: web.Request) -> web.Response:
    with _counting_rejects():
        body = await read_body(request)
        return await _run_postback(request, await body_fields(request, body), body)


@requires("ingest")
async def get_postback(request: web.Request) -> web.Response:
    with _counting_rejects():
        fields = query_fields(request.query)
        fields.pop("api_key", None)
        return await _run_postback(request, fields, b"")


@contextlib.contextmanager
def _counting_rejects() -> Iterator[None]:
    try:
        yield
    except ApiError:
        metrics.INGEST.labels("rejected").inc()
        raise


def _encode_cursor(lead: dict[str, Any]) -> str:
    raw = jsonio.dumps([lead["created_at"], lead["id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, lead_id = jsonio.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(lead_id, str) or "\x00" in lead_id:
            raise ValueError("bad lead id")
        return datetime.fromisoformat(created), lead_id
    except (binascii.Error, ValueError, TypeError) as e:
        raise InvalidRequest("the cursor is not valid", fields={"cursor": "invalid"}) from e


Filters = TypeVar("Filters", bound=LeadFilters)


def _list_query(request: web.Request, model: type[Filters]) -> tuple[Filters, dict[str, str]]:
    plain: dict[str, Any] = {}
    custom: dict[str, str] = {}
    for name, value in request.query.items():
        if name.startswith(CUSTOM_FILTER_PREFIX) and len(name) > len(CUSTOM_FILTER_PREFIX):
            custom[name[len(CUSTOM_FILTER_PREFIX) :]] = value
        elif name in ("stage", "score_tier"):
            plain.setdefault(name, []).append(value)
        else:
            plain[name] = value
    return validate(model, plain), custom


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(
    who: Principal, query: LeadFilters, custom: dict[str, str], stages: list[str] | None
) -> tuple[Any, ...]:
    """The `$1`…`$12` of the leads filters (`sql._FILTERS`), in order."""
    return (
        who.tenant_id,
        stages,
        query.source,
        query.campaign,
        _like(query.search) if query.search else None,
        query.from_,
        query.to,
        query.updated_since,
        list(custom) or None,
        list(custom.values()) or None,
        _score_tiers(who, query.score_tier),
        query.min_score,
    )


def _score_tiers(who: Principal, tiers: list[str] | None) -> list[str] | None:
    """`?score_tier=` as given; 400 naming the tenant's tiers for one it does not have."""
    if not tiers:
        return None
    known = who.scoring.tier_names if who.scoring is not None else ()
    unknown = [t for t in tiers if t not in known]
    if unknown:
        allowed = ", ".join(known) or "(none: this account has no scoring tiers)"
        raise InvalidRequest(
            f"unknown score tier {unknown[0]!r}; allowed: {allowed}",
            fields={"score_tier": f"must be one of: {allowed}"},
        )
    return tiers


@requires("read")
async def list_leads(request: web.Request) -> web.Response:
    query, custom = _list_query(request, LeadListQuery)
    who = request[PRINCIPAL]
    stages = [resolve_stage(who.pipeline, s) for s in query.stage] if query.stage else None
    filters = _filters(who, query, custom, stages)
    after: tuple[datetime | None, str | None] = (None, None)
    offset = query.offset
    if query.cursor:
        after, offset = _decode_cursor(query.cursor), 0
    pool = request.app[POOL]
    rows = await pool.fetch(sql.LIST_LEADS, *filters, *after, query.limit + 1, offset)
    total = await pool.fetchval(sql.COUNT_LEADS, *filters) if query.total else None
    leads = [lead_json(r) for r in rows[: query.limit]]
    more = len(rows) > query.limit
    return json_response(
        {
            "data": leads,
            "total": total,
            "limit": query.limit,
            "offset": offset,
            "next_cursor": _encode_cursor(leads[-1]) if more else None,
        }
    )


@requires("read")
async def count_by_stage(request: web.Request) -> web.Response:
    """How many of the leads matching the filters are in each stage, in one pass."""
    query, custom = _list_query(request, LeadFilters)
    who = request[PRINCIPAL]
    rows = await request.app[POOL].fetch(
        sql.COUNT_LEADS_BY_STAGE, *_filters(who, query, custom, None)
    )
    counts = {r["stage"]: r["leads"] for r in rows}
    stages = list(who.pipeline.all) + sorted(set(counts) - set(who.pipeline.all))
    data = [{"stage": stage, "leads": counts.get(stage, 0)} for stage in stages]
    return json_response({"data": data, "total": sum(counts.values())})


async def _detail(conn: Conn | asyncpg.Pool, who: Principal, lead_id: str) -> Any:
    lead = await get_lead(conn, who.tenant_id, lead_id)
    history = await conn.fetch(sql.LIST_STAGE_HISTORY, lead_id)
    lead["stage_history"] = [dict(r) for r in history]
    lead["deliveries"] = await recent_deliveries(conn, who.tenant_id, lead_id)
    lead["timeline"], lead["timeline_next_cursor"] = await timeline.page(
        conn, who.tenant_id, lead_id, RECENT, None
    )
    lead["deals"] = await deals_of_lead(conn, who.tenant_id, lead_id)
    return {"data": lead}


@requires("read")
async def get_lead_view(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    return json_response(await _detail(request.app[POOL], who, request.match_info["lead_id"]))


@requires("manage")
async def patch_lead(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    settings = request.app[SETTINGS]
    lead_id = request.match_info["lead_id"]
    body = await read_body(request)
    fields = await body_fields(request, body)
    # A blank string clears a field as null does.
    fields = {k: None if isinstance(v, str) and not v.strip() else v for k, v in fields.items()}
    patch = validate(LeadPatch, fields)
    sent = patch.model_fields_set
    values = normalized_values(patch, settings.default_phone_region)
    target = resolve_stage(who.pipeline, patch.stage) if patch.stage else None
    if "stage" in sent and patch.stage is None:
        raise InvalidRequest("stage cannot be cleared", fields={"stage": "cannot be null"})
    if "opted_out" in sent and patch.opted_out is None:
        raise InvalidRequest("opted_out is true or false", fields={"opted_out": "cannot be null"})

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(sql.LOCK_LEAD, lead_id, who.tenant_id)
        if row is None:
            raise NotFound(f"no lead with id {lead_id!r}")
        current = lead_json(row)
        merged = dict(current)
        for name in sent - {"stage", "custom_data", "opted_out"}:
            merged[name] = values.get(name)  # null or blank clears a field
        if "custom_data" in sent:
            # Merged key by key; a key set to null goes, and custom_data: null clears them all.
            custom = {**current["custom_data"], **patch.custom_data} if patch.custom_data else {}
            merged["custom_data"] = {k: v for k, v in custom.items() if v is not None}
        move = None
        if target is not None and target != current["stage"]:
            merged["stage"] = target
            forced = not who.pipeline.is_forward(current["stage"], target)
            move = StageMove(current["stage"], target, forced)
        now = datetime.now(UTC)
        opted = patch.opted_out is not None and await set_opted_out(
            tx, merged, patch.opted_out, now
        )
        converts = move is not None and row["converted_at"] is None and target in who.conversions
        await save_change(tx, current, merged, move, now, scoring=who.scoring, converts=converts)
        if opted:
            await announce(tx, current, merged, now)
        return json_response(await _detail(tx.conn, who, lead_id))

    # The keys it gives the lead are locked as a postback's are, so the two serialise.
    return await run_change(request, body, change, lock_ids=patch_lock_ids(who.tenant_id, values))


@requires("manage")
async def delete_lead(request: web.Request) -> web.Response:
    """Erase the lead's personal data; emits `lead.deleted` with what remains."""
    who = request[PRINCIPAL]
    lead_id = request.match_info["lead_id"]
    now = datetime.now(UTC)

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(sql.ERASE_LEAD, lead_id, who.tenant_id, now)
        if row is None:
            raise NotFound(f"no lead with id {lead_id!r}")
        lead = lead_json(row)
        await tx.conn.execute(sql.ERASE_FROM_OUTBOX, lead_id, who.tenant_id)
        await unlink_lead(tx, lead_id, now)
        await tx.emit(Event("lead.deleted", {**lead, "deleted": True}, now, lead_id))
        return json_response({"id": lead_id, "deleted": True})

    return await run_change(request, b"", change, idempotent=False)


_API_KEY_PARAMETER = {
    "name": "api_key",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "The API key, for senders that cannot set headers.",
}
_POSTBACK_ERRORS = (400, 404, 409, 413, 415, 422)

OPERATIONS = [
    Operation("POST", "/v1/postback", post_postback, "Post a lead (create or update)",
              scope="ingest", body=PostbackIn, forms=True, idempotent=True,
              response=IngestResponse, statuses=(200, 201), errors=_POSTBACK_ERRORS,
              tags=("ingest",)),
    Operation("GET", "/v1/postback", get_postback, "Post a lead as query parameters",
              scope="ingest", query=PostbackIn, response=IngestResponse, statuses=(200, 201),
              errors=(400, 404, 409), tags=("ingest",),
              extra_parameters=(_API_KEY_PARAMETER,)),
    Operation("POST", "/v1/leads", post_postback, "Create a lead (or update its match)",
              scope="ingest", operation_id="create_lead", body=PostbackIn, forms=True,
              idempotent=True, response=IngestResponse, statuses=(200, 201),
              errors=_POSTBACK_ERRORS, tags=("leads",)),
    Operation("GET", "/v1/leads", list_leads, "List leads", scope="read", query=LeadListQuery,
              response=LeadPage, errors=(400,), tags=("leads",)),
    # Before /v1/leads/{lead_id}, which would otherwise take "stage-counts" for a lead's id.
    Operation("GET", "/v1/leads/stage-counts", count_by_stage, "Count leads in each stage",
              scope="read", query=LeadFilters, response=StageCounts, errors=(400,),
              tags=("leads",)),
    Operation("GET", "/v1/leads/{lead_id}", get_lead_view, "Get a lead with its stage history",
              scope="read", response=LeadResponse, errors=(404,), tags=("leads",)),
    Operation("PATCH", "/v1/leads/{lead_id}", patch_lead, "Change a lead's stage or fields",
              scope="manage", body=LeadPatch, forms=True, idempotent=True, response=LeadResponse,
              errors=(400, 404, 409, 413, 415, 422), tags=("leads",)),
    Operation("DELETE", "/v1/leads/{lead_id}", delete_lead, "Erase a lead's personal data",
              scope="manage", response=DeletedResponse, errors=(404,), tags=("leads",)),
]  # fmt: skip
