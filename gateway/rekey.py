"""Re-encrypting stored secrets in batches: all of them under the first key, or only those in clear.

`leadgate secrets rotate` re-encrypts every secret that is not under the first key of
LEADGATE_SECRET_KEYS (endpoint secrets, previous secrets and Ed25519 keys, source secrets, and
sealed idempotent responses); `leadgate migrate` encrypts only the values still in clear (rows
written before secrets were encrypted). Each batch is one short transaction that locks only
its own rows, walking the table by primary key, so it can run beside live traffic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.crypto import Cipher, is_encrypted, is_sealed
from gateway.db import Conn

# Rows per transaction: enough to make round trips cheap, few enough that a row is never held
# locked for more than a few milliseconds.
BATCH = 500

COUNT_ROWS = """
SELECT (SELECT count(*) FROM endpoints) AS endpoints, (SELECT count(*) FROM sources) AS sources,
       (SELECT count(*) FROM idempotency_keys) AS idempotency_keys
"""

# Values still in clear, as `leadgate migrate` reports them when no key is configured.
COUNT_CLEAR = """
SELECT (SELECT count(*) FROM endpoints
        WHERE secret NOT LIKE 'enc1:%' OR previous_secret NOT LIKE 'enc1:%')
     + (SELECT count(*) FROM sources WHERE secret NOT LIKE 'enc1:%')
"""

ENDPOINTS_BATCH = """
SELECT id, secret, previous_secret FROM endpoints WHERE id > $1 ORDER BY id LIMIT $2 FOR UPDATE
"""
UPDATE_ENDPOINTS = """
UPDATE endpoints e SET secret = u.secret, previous_secret = u.previous_secret
FROM unnest($1::text[], $2::text[], $3::text[]) AS u (id, secret, previous_secret)
WHERE e.id = u.id
"""

SOURCES_BATCH = """
SELECT tenant_id, name, secret FROM sources WHERE (tenant_id, name) > ($1, $2)
ORDER BY tenant_id, name LIMIT $3 FOR UPDATE
"""
UPDATE_SOURCES = """
UPDATE sources s SET secret = u.secret
FROM unnest($1::text[], $2::text[], $3::text[]) AS u (tenant_id, name, secret)
WHERE s.tenant_id = u.tenant_id AND s.name = u.name
"""

IDEMPOTENCY_BATCH = """
SELECT tenant_id, key, body FROM idempotency_keys WHERE (tenant_id, key) > ($1, $2)
ORDER BY tenant_id, key LIMIT $3 FOR UPDATE
"""
UPDATE_IDEMPOTENCY = """
UPDATE idempotency_keys i SET body = u.body
FROM unnest($1::text[], $2::text[], $3::bytea[]) AS u (tenant_id, key, body)
WHERE i.tenant_id = u.tenant_id AND i.key = u.key
"""

Progress = Callable[[str, int], None]


@dataclass
class Rekeyed:
    """Rows looked at and rows rewritten, per table."""

    seen: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rewrite:
    cipher: Cipher
    only_clear: bool

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        if self.only_clear:
            return value if is_encrypted(value) else self.cipher.encrypt(value)
        return value if self.cipher.is_current(value) else self.cipher.reencrypt(value)

    def body(self, value: bytes) -> bytes:
        # Bodies are sealed only when they hold a secret; the others stay as they are.
        if not is_sealed(value) or self.cipher.is_current(value.decode("ascii")):
            return value
        return self.cipher.seal(self.cipher.unseal(value))


async def rekey(
    conn: Conn, cipher: Cipher, *, only_clear: bool, progress: Progress | None = None
) -> Rekeyed:
    """Rewrite every stored secret that is not as it should be; returns what was done.

    Raises UndecryptableSecret (naming the key id) for a value no configured key decrypts,
    after committing the batches before it.
    """
    rewrite, done = _Rewrite(cipher, only_clear), Rekeyed()
    step = progress or (lambda table, rows: None)
    await _endpoints(conn, rewrite, done, step)
    await _sources(conn, rewrite, done, step)
    if not only_clear:
        await _idempotency(conn, rewrite, done, step)
    return done


async def row_counts(conn: Conn) -> dict[str, int]:
    row = await conn.fetchrow(COUNT_ROWS)
    assert row is not None
    return dict(row)


async def count_clear(conn: Conn) -> int:
    count: int = await conn.fetchval(COUNT_CLEAR)
    return count


def _tally(done: Rekeyed, table: str, seen: int, changed: int, step: Progress) -> None:
    done.seen[table] = done.seen.get(table, 0) + seen
    done.changed[table] = done.changed.get(table, 0) + changed
    step(table, seen)


async def _endpoints(conn: Conn, rewrite: _Rewrite, done: Rekeyed, step: Progress) -> None:
    last = ""
    while True:
        async with conn.transaction():
            rows = await conn.fetch(ENDPOINTS_BATCH, last, BATCH)
            new = [(r["id"], rewrite.text(r["secret"]), rewrite.text(r["previous_secret"]))
                   for r in rows]  # fmt: skip
            changed = [n for n, r in zip(new, rows, strict=True)
                       if (n[1], n[2]) != (r["secret"], r["previous_secret"])]  # fmt: skip
            if changed:
                await conn.execute(UPDATE_ENDPOINTS, *map(list, zip(*changed, strict=True)))
        _tally(done, "endpoints", len(rows), len(changed), step)
        if len(rows) < BATCH:
            return
        last = rows[-1]["id"]


async def _sources(conn: Conn, rewrite: _Rewrite, done: Rekeyed, step: Progress) -> None:
    last = ("", "")
    while True:
        async with conn.transaction():
            rows = await conn.fetch(SOURCES_BATCH, *last, BATCH)
            new = [(r["tenant_id"], r["name"], rewrite.text(r["secret"])) for r in rows]
            changed = [n for n, r in zip(new, rows, strict=True) if n[2] != r["secret"]]
            if changed:
                await conn.execute(UPDATE_SOURCES, *map(list, zip(*changed, strict=True)))
        _tally(done, "sources", len(rows), len(changed), step)
        if len(rows) < BATCH:
            return
        last = (rows[-1]["tenant_id"], rows[-1]["name"])


async def _idempotency(conn: Conn, rewrite: _Rewrite, done: Rekeyed, step: Progress) -> None:
    last = ("", "")
    while True:
        async with conn.transaction():
            rows = await conn.fetch(IDEMPOTENCY_BATCH, *last, BATCH)
            new = [(r["tenant_id"], r["key"], rewrite.body(r["body"])) for r in rows]
            changed = [n for n, r in zip(new, rows, strict=True) if n[2] != r["body"]]
            if changed:
                await conn.execute(UPDATE_IDEMPOTENCY, *map(list, zip(*changed, strict=True)))
        _tally(done, "idempotency_keys", len(rows), len(changed), step)
        if len(rows) < BATCH:
            return
        last = (rows[-1]["tenant_id"], rows[-1]["key"])
