"""The leads' SQL, named. Column lists come from one tuple, never from input.

The hot path (a batch of postbacks) is three statements whatever the batch holds: lock the
matching keys (`gateway.db.lock_keys`), fetch the leads they could match, write every new lead,
change and history row.
Each lookup is an equality on a whole index key, so it stays an index scan whatever plan the
statement cache holds and however large the table has grown.
"""

from __future__ import annotations

from gateway.leads.ingest import STORED
from gateway.leads.models import NUMBER_FIELDS

_COLS = ", ".join(STORED)
_SELECT = f"SELECT id, {_COLS}, opted_out_at, created_at, updated_at, converted_at FROM leads"
_TYPES = {c: "float8" for c in ("form_completion_percent", "estimated_value")}
_TYPES |= {c: "int4" for c in NUMBER_FIELDS if c not in _TYPES} | {"custom_data": "jsonb"}
_TYPES |= {"score": "int4", "score_breakdown": "jsonb", "converted_at": "timestamptz"}
_TYPES |= {"shard": "int2", "created": "int8", "converted": "int8"}


def _unnest(first: int, columns: tuple[str, ...]) -> str:
    """`unnest($first::t[], …) AS u (c, …)`, each column typed as the table has it."""
    args = ", ".join(f"${i}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(columns, first))
    return f"unnest({args}) AS u ({', '.join(columns)})"


# Every live lead any postback of the batch could match, by each of its keys: our id, external
# id, email, phone ($5 is NULL where the tenant does not match on phone). Each arm looks up its
# key alone (OFFSET 0 keeps the tenant's condition out of it), so the only index it can use is
# the key's own — never one that starts with the tenant and would walk all its leads — and the
# tenant is checked on what it finds. Locked in id order, one primary-key lookup each, so two
# batches locking the same leads take them in the same order.
FETCH_CANDIDATES = f"""
SELECT l.* FROM (
    SELECT DISTINCT m.id
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
        AS q (tenant_id, lead_id, external_id, email, phone)
    CROSS JOIN LATERAL (
        -- Each arm runs only for a key the postback has (a one-time filter on the outer row):
        -- a generic plan made where most leads share a value (one phone, say) may scan the
        -- table for that arm, and must then not run it for postbacks without the key.
        (SELECT id, tenant_id FROM leads
         WHERE q.lead_id IS NOT NULL AND id = q.lead_id OFFSET 0)
        UNION ALL
        (SELECT id, tenant_id FROM leads
         WHERE q.external_id IS NOT NULL AND external_id = q.external_id OFFSET 0)
        UNION ALL
        (SELECT id, tenant_id FROM leads WHERE q.email IS NOT NULL AND email = q.email OFFSET 0)
        UNION ALL
        (SELECT id, tenant_id FROM leads WHERE q.phone IS NOT NULL AND phone = q.phone OFFSET 0)
    ) AS m
    WHERE m.tenant_id = q.tenant_id
    ORDER BY m.id
) AS c
CROSS JOIN LATERAL (
    -- A locking subquery is never flattened into a join: one primary-key lookup per candidate.
    SELECT id, tenant_id, furthest_stage, converted_at, {_COLS}, opted_out_at, created_at,
           updated_at
    FROM leads WHERE id = c.id AND deleted_at IS NULL
    FOR UPDATE
) AS l
"""

_ROW = ("id", "tenant_id", "furthest_stage", "converted_at", *STORED)
_HISTORY = ("tenant_id", "lead_id", "from_stage", "to_stage", "forced", "api_key_id")
_N = len(_ROW)
_COUNTS = ("tenant_id", "shard", "created", "converted")

# The month (UTC) a moment counts in, as the counters key it.
MONTH_OF = "date_trunc('month', {} AT TIME ZONE 'UTC')::date"

# A batch's leads in one statement: $1 the batch's time; new leads (each in its final state, its
# history written beside it), changed leads, the tenants' counters of created and converted leads
# (one row per tenant, in tenant order, so that batches never wait on each other in a circle),
# and every stage history row.
WRITE_LEADS = f"""
WITH inserted AS (
    INSERT INTO leads (id, tenant_id, furthest_stage, converted_at, {_COLS}, created_at,
                       updated_at)
    SELECT u.*, $1, $1 FROM {_unnest(2, _ROW)}
), updated AS (
    UPDATE leads SET updated_at = $1, furthest_stage = u.furthest_stage,
        converted_at = u.converted_at, {", ".join(f"{c} = u.{c}" for c in STORED)}
    FROM {_unnest(2 + _N, _ROW)}
    WHERE leads.id = u.id
), counted AS (
    INSERT INTO tenant_monthly_counts AS c (tenant_id, month, shard, created, converted)
    SELECT u.tenant_id, {MONTH_OF.format("$1::timestamptz")}, u.shard, u.created, u.converted
    FROM {_unnest(8 + 2 * _N, _COUNTS)}
    ORDER BY u.tenant_id
    ON CONFLICT (tenant_id, month, shard) DO UPDATE
    SET created = c.created + excluded.created, converted = c.converted + excluded.converted
)
INSERT INTO stage_history (tenant_id, lead_id, from_stage, to_stage, forced, api_key_id, at)
SELECT h.*, $1 FROM unnest(${2 + 2 * _N}::text[], ${3 + 2 * _N}::text[], ${4 + 2 * _N}::text[],
                           ${5 + 2 * _N}::text[], ${6 + 2 * _N}::bool[], ${7 + 2 * _N}::text[])
    AS h ({", ".join(_HISTORY)})
"""
LEAD_ROW = _ROW

# By primary key alone: the tenant is checked in a form no index serves (`IS NOT DISTINCT FROM`,
# equal to `=` for a non-null tenant), so that no plan, however young the table, walks the
# tenant's listing index instead. The same holds for the other lookups by id of one tenant.
GET_LEAD = f"{_SELECT} WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND deleted_at IS NULL"

LOCK_LEAD = f"{GET_LEAD} FOR UPDATE"

# A manual change of one lead (PATCH). $3: a stage the lead moved to; it becomes the furthest
# reached if it ranks higher in the tenant's pipeline than the furthest so far. $4: the lead now
# converts for the first time, so it is counted (in shard 0 of its tenant's month).
UPDATE_LEAD = (
    "WITH changed AS (UPDATE leads SET updated_at = $2, furthest_stage = CASE"
    " WHEN coalesce(array_position(t.stages, $3::text), 0)"
    " > coalesce(array_position(t.stages, leads.furthest_stage), 0)"
    " THEN $3 ELSE leads.furthest_stage END,"
    " converted_at = CASE WHEN $4::bool THEN $2 ELSE leads.converted_at END, "
    + ", ".join(f"{col} = ${i}" for i, col in enumerate(STORED, start=5))
    + " FROM tenants t WHERE leads.id = $1 AND t.id = leads.tenant_id"
    " RETURNING leads.tenant_id)"
    " INSERT INTO tenant_monthly_counts AS c (tenant_id, month, shard, converted)"
    f" SELECT tenant_id, {MONTH_OF.format('$2::timestamptz')}, 0, 1 FROM changed WHERE $4"
    " ON CONFLICT (tenant_id, month, shard) DO UPDATE SET converted = c.converted + 1"
)

# The month's counter of each quota-bound tenant with new leads in the batch, locked until the
# batch commits, with what the tenant created this month so far. The row is upserted, so it is
# locked in its latest committed version even if another batch created it meanwhile: two batches
# at the quota's edge see each other's creations, and the quota holds exactly.
LOCK_QUOTA = f"""
WITH locked AS (
    INSERT INTO tenant_monthly_counts AS c (tenant_id, month, shard)
    SELECT t, {MONTH_OF.format("$2::timestamptz")}, 0 FROM unnest($1::text[]) AS t ORDER BY t
    ON CONFLICT (tenant_id, month, shard) DO UPDATE SET created = c.created
    RETURNING c.tenant_id, c.month, c.created
)
SELECT l.tenant_id, l.created + coalesce((
    SELECT sum(o.created) FROM tenant_monthly_counts o
    WHERE o.tenant_id = l.tenant_id AND o.month = l.month AND o.shard <> 0), 0)::bigint AS created
FROM locked l
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
# carried the lead are dropped. Only `lead.deleted`, written next, goes out afterwards (and the
# `deal.updated` of each deal it unlinks). Deal events keep their bodies: they carry the deal.
ERASE_FROM_OUTBOX = """
WITH cancelled AS (
    UPDATE deliveries SET state = 'cancelled', leased_until = NULL, body = NULL, updated_at = now()
    WHERE lead_id = $1 AND tenant_id = $2 AND state = 'pending'
), unrendered AS (
    UPDATE deliveries SET body = NULL
    WHERE lead_id = $1 AND tenant_id = $2 AND state <> 'pending' AND body IS NOT NULL
), scrubbed AS (
    UPDATE events SET body = jsonb_build_object(
        'id', id, 'type', type, 'timestamp', body::jsonb -> 'timestamp',
        'data', jsonb_build_object('id', lead_id, 'erased', true))::text
    WHERE lead_id = $1 AND tenant_id = $2 AND NOT starts_with(type, 'deal.')
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
  AND ($11::text[] IS NULL OR score_tier = ANY ($11))
  AND ($12::int IS NULL OR score >= $12)
"""

COUNT_LEADS = f"SELECT count(*) FROM leads {_FILTERS}"

# Newest first; the keyset ($13, $14) is the last row of the previous page.
LIST_LEADS = f"""{_SELECT} {_FILTERS}
  AND ($13::timestamptz IS NULL OR (created_at, id) < ($13, $14::text))
ORDER BY created_at DESC, id DESC
LIMIT $15 OFFSET $16"""

# One pass over the matching leads for every stage's count (the dashboard's board columns).
COUNT_LEADS_BY_STAGE = f"SELECT stage, count(*) AS leads FROM leads {_FILTERS} GROUP BY stage"
