"""`GET /v1/leads/{id}/events`: every item of a lead's timeline, a cursor page at a time."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import POOL, PRINCIPAL
from gateway.deliveries.sql import LEAD_EXISTS
from gateway.errors import NotFound
from gateway.http import json_response, validate
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.timeline import store
from gateway.timeline.models import TimelinePage, TimelineQuery


@requires("read")
async def lead_events(request: web.Request) -> web.Response:
    query = validate(TimelineQuery, dict(request.query))
    tenant_id = request[PRINCIPAL].tenant_id
    lead_id = request.match_info["lead_id"]
    pool = request.app[POOL]
    if not await pool.fetchval(LEAD_EXISTS, lead_id, tenant_id):
        raise NotFound(f"no lead with id {lead_id!r}")
    items, next_cursor = await store.page(pool, tenant_id, lead_id, query.limit, query.cursor)
    total = await store.count(pool, tenant_id, lead_id) if query.total else None
    return json_response(
        {"data": items, "total": total, "limit": query.limit, "next_cursor": next_cursor}
    )


OPERATIONS = [
    Operation("GET", "/v1/leads/{lead_id}/events", lead_events,
              "Page through a lead's timeline, newest first", scope="read", query=TimelineQuery,
              response=TimelinePage, errors=(400, 404), tags=("leads",)),
]  # fmt: skip
