"""Running one request's change: the shape every write in the API shares.

One transaction holds the change and its events (the outbox); with an Idempotency-Key it runs
at most once per key and request; once it has committed, the deliveries it made due are
signalled to the worker. Nothing is answered before the commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway import idempotency
from gateway.appkeys import OUTBOX, POOL, PRINCIPAL, REDIS, SETTINGS
from gateway.db import Conn
from gateway.events import Tx
from gateway.queue import signal_due

Change = Callable[[Tx], Awaitable[web.Response]]


async def run_change(
    request: web.Request, body: bytes, change: Change, *, idempotent: bool = True
) -> web.Response:
    """Run `change` in one transaction (once per Idempotency-Key), then signal its deliveries."""
    who = request[PRINCIPAL]
    due: list[str] = []

    async def in_transaction(conn: Conn) -> web.Response:
        return await change(Tx(conn, who.tenant_id, who.key_id, request.app[OUTBOX], due))

    key = idempotency.key_of(request) if idempotent else None
    response = await idempotency.run_once(
        request.app[POOL],
        who.tenant_id,
        key,
        idempotency.fingerprint(request, body) if key else b"",
        request.app[SETTINGS].idempotency_ttl_seconds,
        in_transaction,
    )
    await signal_due(request.app[REDIS], due)
    return response
