"""Idempotency keys: the same request with the same key runs once; its response is replayed.

The first response to a key is stored in the same transaction as the change the request made,
so the two commit together or not at all. While a request runs, its transaction holds an
advisory lock on its key: a concurrent request with that key gets 409 at once, and a request
that dies releases the key with its connection — nothing is left stuck "in flight".

A batch (`gateway.batcher`) claims the keys of all its requests in two statements — try their
locks, then read what is stored — and stores their responses in one more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiohttp import web

from gateway.constants import MAX_IDEMPOTENCY_KEY
from gateway.crypto import Cipher
from gateway.db import Conn
from gateway.errors import ApiError, Conflict, IdempotencyKeyReused, InvalidRequest

HEADERS = ("Idempotency-Key", "X-Idempotency-Key")
REPLAYED_HEADER = "Idempotent-Replayed"

# One row per key, in order, saying whether its lock was free. A separate statement from the
# read below, so the read's snapshot is taken after the lock is held and sees what the key's
# previous holder committed.
TRY_LOCK_KEYS = """
SELECT pg_try_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS q (k, i)
ORDER BY i
"""

GET_STORED = """
SELECT q.i, s.fingerprint, s.status, s.content_type, s.body
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q (tenant_id, key, i)
JOIN idempotency_keys s ON s.tenant_id = q.tenant_id AND s.key = q.key
WHERE s.created_at > now() - make_interval(secs => $3)
"""

# An expired row for the same key is replaced: past its TTL a key may be used afresh.
STORE = """
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type, body)
SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int2[], $5::text[], $6::bytea[])
ON CONFLICT (tenant_id, key) DO UPDATE SET
    fingerprint = EXCLUDED.fingerprint, status = EXCLUDED.status,
    content_type = EXCLUDED.content_type, body = EXCLUDED.body, created_at = now()
"""


@dataclass(frozen=True, slots=True)
class Key:
    """A request's idempotency key, and what makes another request "the same"."""

    tenant_id: str
    key: str
    fingerprint: bytes

    @property
    def lock_id(self) -> int:
        digest = hashlib.blake2b(f"idem\0{self.tenant_id}\0{self.key}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)


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


def request_key(request: web.Request, tenant_id: str, body: bytes) -> Key | None:
    key = key_of(request)
    return Key(tenant_id, key, fingerprint(request, body)) if key is not None else None


Claimed = web.Response | ApiError | None


async def claim(conn: Conn, keys: list[Key], ttl_seconds: int, cipher: Cipher) -> list[Claimed]:
    """Per key, in order: None (run the request), its stored response, or its 409 / 422.

    A key that occurs twice in the batch is in flight for its second request: 409.
    """
    outcomes: list[Claimed] = [None] * len(keys)
    seen: set[tuple[str, str]] = set()
    for i, k in enumerate(keys):
        if (k.tenant_id, k.key) in seen:
            outcomes[i] = in_progress()
        seen.add((k.tenant_id, k.key))
    locked = await conn.fetch(TRY_LOCK_KEYS, [k.lock_id for k in keys])
    for i, row in enumerate(locked):
        if not row[0]:
            outcomes[i] = in_progress()
    stored = await conn.fetch(
        GET_STORED, [k.tenant_id for k in keys], [k.key for k in keys], float(ttl_seconds)
    )
    for row in stored:
        i = row["i"] - 1
        if outcomes[i] is not None:
            continue
        if row["fingerprint"] != keys[i].fingerprint:
            outcomes[i] = IdempotencyKeyReused(
                "this idempotency key was used with a different request"
            )
        else:
            outcomes[i] = web.Response(
                body=cipher.unseal(row["body"]),
                status=row["status"],
                headers={"Content-Type": row["content_type"], REPLAYED_HEADER: "true"},
            )
    return outcomes


def in_progress() -> Conflict:
    return Conflict("a request with this idempotency key is still in progress")


async def store(conn: Conn, done: list[tuple[Key, web.Response, bool]], cipher: Cipher) -> None:
    """Store each first response under its key, in the transaction that made it; a response
    that holds a secret (`True`) is stored encrypted, as the secret is."""
    if not done:
        return
    bodies = []
    for _, response, sealed in done:
        assert isinstance(response.body, bytes)
        bodies.append(cipher.seal(response.body) if sealed else response.body)
    await conn.execute(
        STORE,
        [k.tenant_id for k, _, _ in done],
        [k.key for k, _, _ in done],
        [k.fingerprint for k, _, _ in done],
        [r.status for _, r, _ in done],
        [r.headers.get("Content-Type", "application/json") for _, r, _ in done],
        bodies,
    )
