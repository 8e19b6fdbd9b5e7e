"""`GET /v1/scoring` and `PUT /v1/scoring`: a tenant's scoring rules and tiers, and the progress
of the rescore that follows every change of them."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import POOL, PRINCIPAL, RESCORER
from gateway.changes import run_change
from gateway.errors import NotFound
from gateway.events import Tx
from gateway.http import body_fields, json_response, read_body, refuse_nul
from gateway.middleware import requires
from gateway.openapi import Operation
from gateway.scoring.models import ScoringIn, ScoringResponse, parse_scoring
from gateway.scoring.store import read_scoring, save_scoring


@requires("read")
async def get_scoring(request: web.Request) -> web.Response:
    data = await read_scoring(request.app[POOL], request[PRINCIPAL].tenant_id)
    return json_response({"data": data})


@requires("manage")
async def put_scoring(request: web.Request) -> web.Response:
    """Replace the rules and tiers; every lead is scored again in the background."""
    body = await read_body(request)
    fields = await body_fields(request, body)
    refuse_nul(fields)
    spec = parse_scoring(fields)

    async def change(tx: Tx) -> web.Response:
        saved = await save_scoring(tx.conn, tx.tenant_id, spec)
        if saved is None:
            raise NotFound("no such account")
        return json_response({"data": saved[0]})

    response = await run_change(request, body, change)
    request.app[RESCORER].wake()
    return response


OPERATIONS = [
    Operation("GET", "/v1/scoring", get_scoring, "Get the scoring rules and the rescore's progress",
              scope="read", response=ScoringResponse, tags=("scoring",)),
    Operation("PUT", "/v1/scoring", put_scoring, "Replace the scoring rules and tiers",
              scope="manage", body=ScoringIn, idempotent=True, response=ScoringResponse,
              errors=(400, 413, 415, 422), tags=("scoring",)),
]  # fmt: skip
