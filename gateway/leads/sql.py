"""The leads' SQL, named. Column lists come from one tuple, never from input."""

from __future__ import annotations

from gateway.leads.models import NUMBER_FIELDS, TEXT_FIELDS

# The columns a postback or PATCH writes, in the order every query below binds them.
WRITABLE = (*TEXT_FIELDS, "stage", *NUMBER_FIELDS, "custom_data")
_COLS = ", ".join(WRITABLE)
_SELECT = f"SELECT id, {_COLS}, opted_out_at, created_at, updated_at FROM leads"

# A new lead and the first entry of its stage history, in one statement.
# $4: the furthest stage reached; $5: the API key; then the writable columns.
INSERT_LEAD = (
    "WITH lead AS (INSERT INTO leads (id, tenant_id, created_at, updated_at, furthest_stage, "
    f"{_COLS}) VALUES ($1, $2, $3, $3, $4, "
    + ", ".join(f"${i}" for i in range(6, 6 + len(WRITABLE)))
    + ") RETURNING id, tenant_id, stage, created_at) "
    "INSERT INTO stage_history (tenant_id, lead_id, from_stage, to_stage, forced, api_key_id, at) "
    "SELECT tenant_id, id, NULL, stage, false, $5, created_at FROM lead"
)

# $3: a stage the lead moved to; it becomes the furthest reached if it ranks higher in the
# tenant's pipeline than the furthest so far (a forced move back lowers nothing).
UPDATE_LEAD = (
    "UPDATE leads SET updated_at = $2, furthest_stage = CASE"
    " WHEN coalesce(array_position(t.stages, $3::text), 0)"
    " > coalesce(array_position(t.stages, leads.furthest_stage), 0)"
    " THEN $3 ELSE leads.furthest_stage END, "
    + ", ".join(f"{col} = ${i}" for i, col in enumerate(WRITABLE, start=4))
    + " FROM tenants t WHERE leads.id = $1 AND t.id = leads.tenant_id"
)

GET_LEAD = f"{_SELECT} WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL"

LOCK_LEAD = f"{GET_LEAD} FOR UPDATE"

# First hit wins: external id, then email, then phone (NULL when the tenant does not match on
# phone). The caller holds advisory locks on these keys, so no concurrent postback can insert a
# lead with them between this read and its own insert.
MATCH_LEAD = f"""{_SELECT}
WHERE tenant_id = $1 AND deleted_at IS NULL
  AND (external_id = $2 OR email = $3 OR phone = $4)
ORDER BY (external_id = $2) IS TRUE DESC, (email = $3) IS TRUE DESC, created_at
LIMIT 1 FOR UPDATE"""

# Transaction-scoped locks on the matching keys, taken in ascending order so two postbacks that
# share several keys cannot deadlock.
LOCK_MATCH_KEYS = """
SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k
"""

INSERT_STAGE_CHANGE = """
INSERT INTO stage_history (tenant_id, lead_id, from_stage, to_stage, forced, api_key_id, at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""

LIST_STAGE_HISTORY = """
SELECT from_stage, to_stage, forced, at, api_key_id FROM stage_history
WHERE lead_id = $1 ORDER BY id
"""

# Erasure keeps what is not personal (stage, attribution) so funnels and analytics stay true.
ERASE_LEAD = f"""
UPDATE leads SET
    external_id = NULL, email = NULL, phone = NULL, first_name = NULL, last_name = NULL,
    company = NULL, referrer = NULL, ip_address = NULL, user_agent = NULL, custom_data = '{{}}',
    updated_at = $3, deleted_at = $3
WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL
RETURNING id, {_COLS}, opted_out_at, created_at, updated_at
"""

# Erasure reaches what the lead's earlier changes left behind: their undelivered webhooks are
# cancelled, their event bodies keep only the lead's id, and stored idempotent responses that
# carried the lead are dropped. Only `lead.deleted`, written next, goes out afterwards.
ERASE_FROM_OUTBOX = """
WITH cancelled AS (
    UPDATE deliveries SET state = 'cancelled', leased_until = NULL, updated_at = now()
    WHERE lead_id = $1 AND tenant_id = $2 AND state = 'pending'
), scrubbed AS (
    UPDATE events SET body = jsonb_build_object(
        'id', id, 'type', type, 'timestamp', body::jsonb -> 'timestamp',
        'data', jsonb_build_object('id', lead_id, 'erased', true))::text
    WHERE lead_id = $1 AND tenant_id = $2
)
DELETE FROM idempotency_keys
WHERE tenant_id = $2 AND position(convert_to($1, 'UTF8') IN body) > 0
"""

_FILTERS = """
WHERE tenant_id = $1 AND deleted_at IS NULL
  AND ($2::text[] IS NULL OR stage = ANY ($2))
  AND ($3::text IS NULL OR source = $3)
  AND ($4::text IS NULL OR campaign = $4)
  AND ($5::text IS NULL OR email ILIKE $5 OR phone ILIKE $5 OR company ILIKE $5
       OR concat_ws(' ', first_name, last_name) ILIKE $5)
  AND ($6::timestamptz IS NULL OR created_at >= $6)
  AND ($7::timestamptz IS NULL OR created_at < $7)
  AND ($8::timestamptz IS NULL OR updated_at >= $8)
  AND ($9::text[] IS NULL OR NOT EXISTS (
        SELECT 1 FROM unnest($9::text[], $10::text[]) AS c (k, v)
        WHERE leads.custom_data ->> c.k IS DISTINCT FROM c.v))
"""

COUNT_LEADS = f"SELECT count(*) FROM leads {_FILTERS}"

# Newest first; the keyset ($11, $12) is the last row of the previous page.
LIST_LEADS = f"""{_SELECT} {_FILTERS}
  AND ($11::timestamptz IS NULL OR (created_at, id) < ($11, $12::text))
ORDER BY created_at DESC, id DESC
LIMIT $13 OFFSET $14"""

# One pass over the matching leads for every stage's count (the dashboard's board columns).
COUNT_LEADS_BY_STAGE = f"SELECT stage, count(*) AS leads FROM leads {_FILTERS} GROUP BY stage"
