"""Scoring's SQL, named: the rule set on the tenant, the rescore's progress and its pages."""

from __future__ import annotations

from gateway.leads.ingest import STORED

_LEAD_COLS = ", ".join(STORED)

GET_SCORING = "SELECT scoring FROM tenants WHERE id = $1"
LOCK_SCORING = "SELECT scoring FROM tenants WHERE id = $1 FOR UPDATE"
SET_SCORING = "UPDATE tenants SET scoring = $2 WHERE id = $1"

_RESCORE_COLS = "tenant_id, version, state, done, total, changed, started_at, finished_at"

GET_RESCORE = f"SELECT {_RESCORE_COLS} FROM scoring_rescores WHERE tenant_id = $1"

# A new version of the rules starts its rescore afresh (after $3 seconds), whatever the one
# before it had done.
START_RESCORE = f"""
INSERT INTO scoring_rescores (tenant_id, version, state, not_before)
VALUES ($1, $2, 'pending', now() + make_interval(secs => $3))
ON CONFLICT (tenant_id) DO UPDATE SET
    version = excluded.version, state = 'pending', done = 0, total = NULL, changed = 0,
    cursor_created_at = NULL, cursor_id = NULL, not_before = excluded.not_before,
    leased_until = NULL, started_at = now(), finished_at = NULL
RETURNING {_RESCORE_COLS}
"""

# One unfinished rescore that is due and that no live gateway holds, leased to this one.
CLAIM_RESCORE = """
UPDATE scoring_rescores SET state = 'running', leased_until = now() + make_interval(secs => $1)
WHERE tenant_id = (
    SELECT tenant_id FROM scoring_rescores
    WHERE state <> 'done' AND not_before <= now()
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY not_before LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING tenant_id, version
"""

# The rescore's row, locked for one page: a change of rules meanwhile waits for the page, and a
# page finds a newer version (which starts again) instead of writing under the old one.
LOCK_RESCORE = """
SELECT version, total, cursor_created_at, cursor_id FROM scoring_rescores
WHERE tenant_id = $1 FOR UPDATE
"""

# Where a rescore starts: leads created until a moment just after now, newest first.
RESCORE_START = """
SELECT now() + interval '1 second' AS upto,
       (SELECT count(*) FROM leads
        WHERE tenant_id = $1 AND created_at < now() + interval '1 second') AS total
"""

# The next page of the tenant's leads, newest first, from the keyset ($2, $3) down, through the
# listing index; each locked by primary key, in id order as batches lock them (no deadlock).
RESCORE_PAGE = f"""
SELECT l.* FROM (
    SELECT id FROM leads
    WHERE tenant_id = $1 AND (created_at, id) < ($2::timestamptz, $3::text)
    ORDER BY created_at DESC, id DESC
    LIMIT $4
) AS c
CROSS JOIN LATERAL (
    SELECT id, {_LEAD_COLS}, opted_out_at, created_at, updated_at, deleted_at
    FROM leads WHERE id = c.id
    FOR UPDATE
) AS l
ORDER BY l.id
"""

# New scores of changed leads, in one statement.
SET_SCORES = """
UPDATE leads SET score = u.score, score_tier = u.score_tier, score_breakdown = u.score_breakdown,
    updated_at = $1
FROM unnest($2::text[], $3::int4[], $4::text[], $5::jsonb[])
    AS u (id, score, score_tier, score_breakdown)
WHERE leads.id = u.id
"""

RESCORE_PROGRESS = """
UPDATE scoring_rescores SET
    done = done + $2, changed = changed + $3, total = CASE WHEN $7 THEN done + $2 ELSE $4 END,
    cursor_created_at = $5, cursor_id = $6,
    state = CASE WHEN $7 THEN 'done' ELSE 'running' END,
    finished_at = CASE WHEN $7 THEN now() END,
    leased_until = CASE WHEN $7 THEN NULL ELSE now() + make_interval(secs => $8) END
WHERE tenant_id = $1
"""

# A lead's whole row, for scoring it again after a change outside the batch (an opt-out).
GET_LEAD_FOR_SCORE = f"""
SELECT id, {_LEAD_COLS}, opted_out_at, created_at, updated_at FROM leads
WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND deleted_at IS NULL  -- by id alone
"""
