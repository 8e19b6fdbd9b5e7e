"""Running one request's change: the shape every write in the API shares.

A request hands its change to the batcher (`gateway.batcher`) and waits: the change runs in one
transaction with its events (the outbox), once per Idempotency-Key, beside the other changes
that arrived with it; the request is answered after the commit, and a worker is woken for the
deliveries it made due.

A change is either a function applied alone (`run_change`), or a payload of a kind the batcher
applies set-based for all requests of that kind at once (`run_batched`, e.g. postbacks).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway import idempotency
from gateway.appkeys import BATCHER, PRINCIPAL
from gateway.batcher import Applier, Change, Item
from gateway.events import Tx


def _item(request: web.Request, body: bytes, idempotent: bool, lock_ids: Sequence[int]) -> Item:
    who = request[PRINCIPAL]
    key = idempotency.request_key(request, who.tenant_id, body) if idempotent else None
    return Item(tenant_id=who.tenant_id, key_id=who.key_id, idem=key, lock_ids=lock_ids)


def answer(response: web.Response) -> Change:
    """A change that writes nothing and answers `response` (worked out before the batch):
    for a POST without effects, so that an Idempotency-Key still replays it byte for byte."""

    async def change(_tx: Tx) -> web.Response:
        return response

    return change


async def run_change(
    request: web.Request,
    body: bytes,
    change: Change,
    *,
    idempotent: bool = True,
    lock_ids: Sequence[int] = (),
    sealed: bool = False,
) -> web.Response:
    """Run `change` in its batch's transaction (once per Idempotency-Key); answer after commit.

    `lock_ids` are advisory locks the change needs before it runs (taken for the whole batch,
    in order, so that changes sharing them serialise without deadlocks). `sealed`: the response
    holds a secret, so its stored copy is encrypted.
    """
    item = _item(request, body, idempotent, lock_ids)
    item.change = change
    item.sealed = sealed
    return await request.app[BATCHER].submit(item)


async def run_batched(
    request: web.Request,
    body: bytes,
    applier: Applier,
    payload: Any,
    *,
    idempotent: bool = True,
    lock_ids: Sequence[int] = (),
) -> web.Response:
    """Have `payload` applied by `applier`, set-based with the batch's other payloads of it."""
    item = _item(request, body, idempotent, lock_ids)
    item.applier = applier
    item.payload = payload
    return await request.app[BATCHER].submit(item)
