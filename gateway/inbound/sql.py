"""Inbound sources' and events' SQL, named."""

from __future__ import annotations

CREATE_SOURCE = """
INSERT INTO sources (tenant_id, name, secret, signature, tolerance_seconds)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING name, signature, tolerance_seconds, created_at
"""

LIST_SOURCES = """
SELECT name, signature, tolerance_seconds, created_at FROM sources
WHERE tenant_id = $1 ORDER BY name
"""

GET_SOURCE = """
SELECT name, secret, signature, tolerance_seconds, created_at FROM sources
WHERE tenant_id = $1 AND name = $2
"""

DELETE_SOURCE = "DELETE FROM sources WHERE tenant_id = $1 AND name = $2 RETURNING name"

# The first copy of an event wins; a resent one inserts nothing and returns no row.
STORE_EVENT = """
INSERT INTO inbound_events (id, tenant_id, source, external_id, type, lead_id, body)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, source, external_id) DO NOTHING
RETURNING id
"""

FIND_STORED = """
SELECT id, type, lead_id FROM inbound_events
WHERE tenant_id = $1 AND source = $2 AND external_id = $3
"""

# Linking: by our id, else the normalised email, else the E.164 phone.
FIND_LEAD = """
SELECT id FROM (
    SELECT id, 1 AS rank, created_at FROM leads
    WHERE id = $2 AND tenant_id IS NOT DISTINCT FROM $1 AND deleted_at IS NULL
    UNION ALL
    SELECT id, 2, created_at FROM leads
    WHERE email = $3 AND tenant_id IS NOT DISTINCT FROM $1 AND deleted_at IS NULL
    UNION ALL
    SELECT id, 3, created_at FROM leads  -- only with a phone (see leads FETCH_CANDIDATES)
    WHERE $4::text IS NOT NULL AND phone = $4 AND tenant_id IS NOT DISTINCT FROM $1
      AND deleted_at IS NULL
) found
ORDER BY rank, created_at
LIMIT 1
"""

# The outbox event the inbound event was fanned out as (the timeline shows the two as one).
LINK_EVENT = "UPDATE inbound_events SET event_id = $2 WHERE id = $1"

OPT_OUT = """
UPDATE leads SET opted_out_at = coalesce(opted_out_at, $3), updated_at = $3
WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2  -- by id alone
"""
