"""API keys: made random and prefixed, shown once, stored only as a SHA-256 hash.

A request's key is hashed and looked up by its hash; the stored hash is then compared in
constant time, so neither the lookup nor the comparison leaks how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import asyncpg

from gateway.constants import API_KEY_HINT_LENGTH, API_KEY_PREFIX, API_KEY_RANDOM_BYTES, KEY_PREFIX
from gateway.db import Conn
from gateway.ids import new_id
from gateway.scoring.rules import RuleSet, ruleset_of
from gateway.tenants import Pipeline

CREATE_KEY = """
INSERT INTO api_keys (id, tenant_id, key_hash, hint, scopes, mapping)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, tenant_id, hint, scopes, created_at, revoked_at, mapping
"""

LIST_KEYS = """
SELECT id, tenant_id, hint, scopes, created_at, revoked_at, mapping FROM api_keys
WHERE ($1::text IS NULL OR tenant_id = $1) ORDER BY created_at, id
"""

REVOKE_KEY = """
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1
RETURNING id, tenant_id, hint, scopes, created_at, revoked_at
"""

# One round trip authenticates the key and loads what every request needs of its tenant.
AUTHENTICATE = """
SELECT k.id AS key_id, k.key_hash, k.scopes, t.id AS tenant_id, t.stages, t.exit_stages,
       t.match_phone, t.rate_limit, t.scope_rate_limits, k.mapping, t.scoring,
       t.converted_stages, t.monthly_quota
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE k.key_hash = $1 AND k.revoked_at IS NULL
"""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key, its scopes and what the request needs of its tenant."""

    key_id: str
    tenant_id: str
    scopes: frozenset[str]
    pipeline: Pipeline
    match_phone: bool
    rate_limit: int | None
    scope_rate_limits: dict[str, int]
    # The sender mapping this key's postbacks go through unless they name one.
    mapping: str | None = None
    # The tenant's scoring rules (None: its leads carry no score), the stages that count a lead
    # as converted (empty: the pipeline's last), and its monthly quota of new leads.
    scoring: RuleSet | None = None
    converted_stages: tuple[str, ...] = ()
    monthly_quota: int | None = None

    @property
    def conversions(self) -> frozenset[str]:
        return frozenset(self.converted_stages or self.pipeline.stages[-1:])

    def limit_for(self, scope: str, default: int) -> int:
        """Requests per minute for this key in `scope`: scope override, tenant's, default."""
        return self.scope_rate_limits.get(scope) or self.rate_limit or default


def principal_of(row: asyncpg.Record) -> Principal:
    """The principal a row of AUTHENTICATE (or a dashboard session's, the same columns) makes."""
    return Principal(
        key_id=row["key_id"],
        tenant_id=row["tenant_id"],
        scopes=frozenset(row["scopes"]),
        pipeline=Pipeline(tuple(row["stages"]), tuple(row["exit_stages"])),
        match_phone=row["match_phone"],
        rate_limit=row["rate_limit"],
        scope_rate_limits=row["scope_rate_limits"],
        mapping=row["mapping"],
        scoring=ruleset_of(row["tenant_id"], row["scoring"]),
        converted_stages=tuple(row["converted_stages"] or ()),
        monthly_quota=row["monthly_quota"],
    )


def generate_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_RANDOM_BYTES)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(
    conn: Conn, tenant_id: str, scopes: list[str], mapping: str | None = None
) -> tuple[asyncpg.Record, str]:
    """Create a key; the plain key is returned here and nowhere else, ever."""
    key = generate_key()
    row = await conn.fetchrow(
        CREATE_KEY,
        new_id(KEY_PREFIX),
        tenant_id,
        hash_key(key),
        key[:API_KEY_HINT_LENGTH],
        scopes,
        mapping,
    )
    assert row is not None
    return row, key


class KeyCache:
    """Who a key is, remembered for a few seconds, so a busy key costs no query per request.

    Only valid keys are kept, and only while the cache is trusted: while this process hears
    every change to keys and tenants (gateway/invalidation.py), which drops all entries at
    once. Untrusted, the cache is bypassed, so a lost channel costs queries, never a stale
    answer. `ttl` still bounds every entry; `ttl=0` turns the cache off. A lookup that started
    before an invalidation is not stored after it (the generation says so). Bounded: past
    `max_size` keys it starts afresh.
    """

    def __init__(self, ttl: float, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._generation = 0
        self._trusted = False

    @property
    def trusted(self) -> bool:
        return self._trusted

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, digest: bytes) -> Principal | None:
        if not self._trusted:
            return None
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, digest: bytes, principal: Principal, generation: int) -> None:
        """Remember `principal`, unless the cache was invalidated since `generation`."""
        if self.ttl <= 0 or not self._trusted or generation != self._generation:
            return
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, principal)

    def invalidate(self) -> None:
        """Forget every key: one of them, or a tenant, changed."""
        self._generation += 1
        self._entries.clear()

    def trust(self, trusted: bool) -> None:
        """Start or stop trusting the cache; either way it starts empty."""
        self.invalidate()
        self._trusted = trusted


async def authenticate(
    conn: Conn | asyncpg.Pool, key: str, cache: KeyCache | None = None
) -> Principal | None:
    digest = hash_key(key)
    if cache is not None and (known := cache.get(digest)) is not None:
        return known
    generation = cache.generation if cache is not None else 0
    row = await conn.fetchrow(AUTHENTICATE, digest)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    principal = principal_of(row)
    if cache is not None:
        cache.put(digest, principal, generation)
    return principal
