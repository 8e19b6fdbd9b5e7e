"""Sender mappings: named JSONata expressions from a sender's body to Leadgate's postback fields.

A postback names a mapping with `?mapping=NAME`, or gets its API key's default one. The mapping
runs on the body as parsed (JSON, form or query, as an object) before anything else looks at
it; its result is the postback that then goes through the usual validation, matching and merge.
What the mapping does not name does not reach the lead.

Expressions are read through a short per-process cache (as API keys are), so a postback through
a mapping costs no query of its own while the cache holds it; a changed or deleted mapping is
seen within LEADGATE_AUTH_CACHE_SECONDS.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from gateway.db import Conn
from gateway.dialects.engine import EvaluationError, ExpressionError, compiled

_COLUMNS = "name, expression, description, created_at, updated_at"

CREATE_MAPPING = f"""
INSERT INTO mappings (tenant_id, name, expression, description) VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING {_COLUMNS}
"""

LIST_MAPPINGS = f"SELECT {_COLUMNS} FROM mappings WHERE tenant_id = $1 ORDER BY name"

GET_MAPPING = f"SELECT {_COLUMNS} FROM mappings WHERE tenant_id = $1 AND name = $2"

GET_EXPRESSION = "SELECT expression FROM mappings WHERE tenant_id = $1 AND name = $2"

UPDATE_MAPPING = f"""
UPDATE mappings SET expression = coalesce($3, expression),
    description = CASE WHEN $4 THEN $5 ELSE description END, updated_at = now()
WHERE tenant_id = $1 AND name = $2
RETURNING {_COLUMNS}
"""

# Keys whose postbacks go through the mapping by default; it cannot go while one does.
KEYS_USING = """
SELECT id FROM api_keys WHERE tenant_id = $1 AND mapping = $2 AND revoked_at IS NULL ORDER BY id
"""

DELETE_MAPPING = "DELETE FROM mappings WHERE tenant_id = $1 AND name = $2 RETURNING name"

MAPPING_EXISTS = "SELECT true FROM mappings WHERE tenant_id = $1 AND name = $2"


class MappingFailed(ValueError):
    """The mapping cannot turn this body into postback fields; the message says why."""


def mapping_json(row: asyncpg.Record) -> dict[str, Any]:
    return dict(row)


def apply(expression: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The postback fields `expression` makes of an incoming body."""
    try:
        result = compiled(expression).evaluate(fields)
    except (ExpressionError, EvaluationError) as e:
        raise MappingFailed(str(e)) from e
    if not isinstance(result, dict):
        raise MappingFailed("the mapping must give an object of postback fields")
    return result


class MappingCache:
    """Each mapping's expression, remembered for `ttl` seconds per process (0: always read).

    Absent mappings are remembered too, so a sender naming a wrong one costs no query either.
    Bounded: past `max_size` entries it starts afresh."""

    def __init__(self, ttl: float, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[tuple[str, str], tuple[float, str | None]] = {}

    async def expression(self, conn: Conn | asyncpg.Pool, tenant_id: str, name: str) -> str | None:
        key = (tenant_id, name)
        entry = self._entries.get(key)
        if entry is not None and entry[0] >= time.monotonic():
            return entry[1]
        text: str | None = await conn.fetchval(GET_EXPRESSION, tenant_id, name)
        if self.ttl > 0:
            if len(self._entries) >= self.max_size:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, text)
        return text

    def forget(self, tenant_id: str, name: str) -> None:
        """Drop one entry: this process sees its own changes at once."""
        self._entries.pop((tenant_id, name), None)


async def mapping_exists(conn: Conn | asyncpg.Pool, tenant_id: str, name: str) -> bool:
    return bool(await conn.fetchval(MAPPING_EXISTS, tenant_id, name))
