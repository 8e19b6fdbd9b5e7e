"""The deliveries API, endpoint replay, stopping a lead's follow-ups, and publishing events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp import web

from gateway.appkeys import POOL, PRINCIPAL
from gateway.changes import run_change
from gateway.db import Conn
from gateway.deliveries import sql
from gateway.deliveries.models import (
    Cancelled,
    DeliveryPage,
    DeliveryQuery,
    DeliveryResponse,
    PublishedResponse,
    PublishEvent,
    Replay,
    Replayed,
)
from gateway.errors import Conflict, NotFound
from gateway.events import Event, Tx
from gateway.http import body_fields, json_response, read_body, validate
from gateway.middleware import requires
from gateway.openapi import Operation

# How many of a lead's deliveries `GET /v1/leads/{id}` shows, newest first.
RECENT_DELIVERIES = 20


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


async def recent_deliveries(conn: Conn | asyncpg.Pool, tenant_id: str, lead_id: str) -> list[Any]:
    rows = await conn.fetch(sql.RECENT_DELIVERIES_OF_LEAD, lead_id, tenant_id, RECENT_DELIVERIES)
    return [delivery_json(r) for r in rows]


@requires("read")
async def list_deliveries(request: web.Request) -> web.Response:
    query = validate(DeliveryQuery, dict(request.query))
    filters = (
        request[PRINCIPAL].tenant_id,
        query.endpoint_id,
        query.lead_id,
        query.event_type,
        query.state,
    )
    pool = request.app[POOL]
    rows = await pool.fetch(sql.LIST_DELIVERIES, *filters, query.limit, query.offset)
    total = await pool.fetchval(sql.COUNT_DELIVERIES, *filters)
    return json_response(
        {
            "data": [delivery_json(r) for r in rows],
            "total": total,
            "limit": query.limit,
            "offset": query.offset,
        }
    )


async def _detail(pool: Conn | asyncpg.Pool, tenant_id: str, delivery_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(sql.GET_DELIVERY, delivery_id, tenant_id)
    if row is None:
        raise NotFound(f"no delivery with id {delivery_id!r}")
    attempts = await pool.fetch(sql.LIST_ATTEMPTS, delivery_id)
    return {**delivery_json(row), "attempts": [dict(a) for a in attempts]}


@requires("read")
async def get_delivery(request: web.Request) -> web.Response:
    detail = await _detail(
        request.app[POOL], request[PRINCIPAL].tenant_id, request.match_info["delivery_id"]
    )
    return json_response({"data": detail})


@requires("manage")
async def retry_delivery(request: web.Request) -> web.Response:
    """Send a finished delivery again with a fresh retry schedule; 409 if it is pending."""
    delivery_id = request.match_info["delivery_id"]

    async def change(tx: Tx) -> web.Response:
        row = await tx.conn.fetchrow(sql.RESTART, delivery_id, tx.tenant_id)
        if row is None:
            await _detail(tx.conn, tx.tenant_id, delivery_id)  # 404 if not this tenant's
            raise Conflict("the delivery is pending already; it will be attempted when due")
        tx.due += 1  # due now: the batch wakes a worker once committed
        return json_response({"data": await _detail(tx.conn, tx.tenant_id, delivery_id)})

    return await run_change(request, await read_body(request), change)


@requires("manage")
async def replay_endpoint(request: web.Request) -> web.Response:
    body = await read_body(request)
    spec = validate(Replay, await body_fields(request, body))
    endpoint_id = request.match_info["endpoint_id"]
    states = [spec.state] if isinstance(spec.state, str) else list(spec.state)

    async def change(tx: Tx) -> web.Response:
        if not await tx.conn.fetchval(sql.ENDPOINT_EXISTS, endpoint_id, tx.tenant_id):
            raise NotFound(f"no endpoint with id {endpoint_id!r}")
        rows = await tx.conn.fetch(
            sql.REPLAY_ENDPOINT, endpoint_id, tx.tenant_id, spec.since, states
        )
        tx.due += len(rows)
        return json_response({"replayed": len(rows)})

    return await run_change(request, body, change)


@requires("manage")
async def stop_lead(request: web.Request) -> web.Response:
    """Cancel every not-yet-delivered delivery of the lead, scheduled follow-ups included."""
    lead_id = request.match_info["lead_id"]

    async def change(tx: Tx) -> web.Response:
        if not await tx.conn.fetchval(sql.LEAD_EXISTS, lead_id, tx.tenant_id):
            raise NotFound(f"no lead with id {lead_id!r}")
        status = await tx.conn.execute(sql.STOP_LEAD, lead_id, tx.tenant_id)
        return json_response({"cancelled": int(status.split()[-1])})

    return await run_change(request, await read_body(request), change)


@requires("ingest")
async def publish_event(request: web.Request) -> web.Response:
    body = await read_body(request)
    spec = validate(PublishEvent, await body_fields(request, body))
    who = request[PRINCIPAL]
    now = datetime.now(UTC)
    deliver_at = spec.deliver_at
    if spec.delay is not None:
        deliver_at = now + timedelta(seconds=spec.delay)

    async def change(tx: Tx) -> web.Response:
        conn = tx.conn
        if spec.lead_id and not await conn.fetchval(sql.LEAD_EXISTS, spec.lead_id, who.tenant_id):
            raise NotFound(f"no lead with id {spec.lead_id!r}")
        event = Event(spec.type, spec.data, now, spec.lead_id, deliver_at)
        (event_id,) = await tx.emit(event)
        count = await conn.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", event_id)
        data = {"id": event_id, "type": spec.type, "lead_id": spec.lead_id,
                "deliver_at": deliver_at, "deliveries": count}  # fmt: skip
        return json_response({"data": data}, status=201)

    return await run_change(request, body, change)


OPERATIONS = [
    Operation("GET", "/v1/deliveries", list_deliveries, "List deliveries", scope="read",
              query=DeliveryQuery, response=DeliveryPage, errors=(400,), tags=("deliveries",)),
    Operation("GET", "/v1/deliveries/{delivery_id}", get_delivery,
              "Get a delivery with its attempts", scope="read", response=DeliveryResponse,
              errors=(404,), tags=("deliveries",)),
    Operation("POST", "/v1/deliveries/{delivery_id}/retry", retry_delivery,
              "Retry a delivery now", scope="manage", response=DeliveryResponse,
              errors=(404, 409), tags=("deliveries",)),
    Operation("POST", "/v1/endpoints/{endpoint_id}/replay", replay_endpoint,
              "Replay an endpoint's deliveries", scope="manage", body=Replay, response=Replayed,
              errors=(400, 404, 413, 415), tags=("endpoints",)),
    Operation("POST", "/v1/leads/{lead_id}/stop", stop_lead,
              "Cancel a lead's pending deliveries", scope="manage", response=Cancelled,
              errors=(404,), tags=("leads",)),
    Operation("POST", "/v1/events", publish_event, "Publish a custom or scheduled event",
              scope="ingest", body=PublishEvent, idempotent=True, response=PublishedResponse,
              statuses=(201,),
              errors=(400, 404, 409, 413, 415, 422), tags=("events",)),
]  # fmt: skip
