"""Idempotency keys: the same request with the same key runs once; its response is replayed.

The first response to a key is stored in the same transaction as the change the request made,
so the two commit together or not at all. While a request runs it holds a transaction-scoped
advisory lock on its key: a concurrent request with that key gets 409 at once, and a request
that dies releases the key with its connection — nothing is left stuck "in flight".
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import web

from gateway.constants import MAX_IDEMPOTENCY_KEY
from gateway.db import Conn
from gateway.errors import Conflict, IdempotencyKeyReused, InvalidRequest

HEADERS = ("Idempotency-Key", "X-Idempotency-Key")
REPLAYED_HEADER = "Idempotent-Replayed"

TRY_LOCK_KEY = "SELECT pg_try_advisory_xact_lock($1)"

GET_STORED = """
SELECT fingerprint, status, content_type, body FROM idempotency_keys
WHERE tenant_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)
"""

# An expired row for the same key is replaced: past its TTL a key may be used afresh.
STORE = """
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type, body)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (tenant_id, key) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status,
    content_type = EXCLUDED.content_type, body = EXCLUDED.body, created_at = now()
"""

Work = Callable[[Conn], Awaitable[web.Response]]


def key_of(request: web.Request) -> str | None:
    for header in HEADERS:
        if (key := request.headers.get(header)) is not None:
            if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
                raise InvalidRequest(
                    f"{header} must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
                    fields={header: "invalid"},
                )
            return key
    return None


def fingerprint(request: web.Request, body: bytes) -> bytes:
    """What makes two requests "the same": method, path, query, content type and raw body."""
    digest = hashlib.sha256()
    for part in (request.method, request.path, request.query_string, request.content_type):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(body)
    return digest.digest()


def _lock_id(tenant_id: str, key: str) -> int:
    digest = hashlib.blake2b(f"idem\0{tenant_id}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def run_once(
    pool: asyncpg.Pool,
    tenant_id: str,
    key: str | None,
    print_: bytes,
    ttl_seconds: int,
    work: Work,
) -> web.Response:
    """Run `work` in one transaction; with a key, at most once per key and request."""
    async with pool.acquire() as conn, conn.transaction():
        if key is not None:
            if not await conn.fetchval(TRY_LOCK_KEY, _lock_id(tenant_id, key)):
                raise Conflict("a request with this idempotency key is still in progress")
            stored = await conn.fetchrow(GET_STORED, tenant_id, key, float(ttl_seconds))
            if stored is not None:
                if stored["fingerprint"] != print_:
                    raise IdempotencyKeyReused(
                        "this idempotency key was used with a different request"
                    )
                return web.Response(
                    body=stored["body"],
                    status=stored["status"],
                    headers={"Content-Type": stored["content_type"], REPLAYED_HEADER: "true"},
                )
        response = await work(conn)
        if key is not None:
            assert isinstance(response.body, bytes)
            await conn.execute(
                STORE,
                tenant_id,
                key,
                print_,
                response.status,
                response.headers.get("Content-Type", "application/json"),
                response.body,
            )
    return response
