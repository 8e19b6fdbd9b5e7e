"""Deals' SQL, named. Every statement names the tenant: another tenant's deal is never found."""

from __future__ import annotations

_COLUMNS = (
    "id, lead_id, title, value, currency, stage, probability, custom_data, created_at, updated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM deals"

# The deal's lead, held against erasure until the deal commits: an erasure that comes first
# leaves no lead to find (404), one that comes after finds the deal and unlinks it.
LOCK_LEAD = """
SELECT true FROM leads WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL FOR SHARE
"""

# $6 NULL: the tenant's default currency.
INSERT_DEAL = f"""
INSERT INTO deals (id, tenant_id, lead_id, title, value, currency, stage, probability,
                   custom_data, created_at, updated_at)
SELECT $1, t.id, $3, $4, $5, coalesce($6, t.default_currency), $7, $8, $9, $10, $10
FROM tenants t WHERE t.id = $2
RETURNING {_COLUMNS}
"""

GET_DEAL = f"{_SELECT} WHERE id = $1 AND tenant_id = $2"

LOCK_DEAL = f"{GET_DEAL} FOR UPDATE"

UPDATE_DEAL = f"""
UPDATE deals SET lead_id = $3, title = $4, value = $5, currency = $6, stage = $7,
    probability = $8, custom_data = $9, updated_at = $10
WHERE id = $1 AND tenant_id = $2
RETURNING {_COLUMNS}
"""

DELETE_DEAL = f"DELETE FROM deals WHERE id = $1 AND tenant_id = $2 RETURNING {_COLUMNS}"

_FILTERS = """
WHERE tenant_id = $1
  AND ($2::text[] IS NULL OR stage = ANY ($2))
  AND ($3::numeric IS NULL OR value >= $3)
  AND ($4::numeric IS NULL OR value <= $4)
  AND ($5::text IS NULL OR lead_id = $5)
"""

COUNT_DEALS = f"SELECT count(*) FROM deals {_FILTERS}"

# Newest first; the keyset ($6, $7) is the last row of the previous page.
LIST_DEALS = f"""{_SELECT} {_FILTERS}
  AND ($6::timestamptz IS NULL OR (created_at, id) < ($6, $7::text))
ORDER BY created_at DESC, id DESC
LIMIT $8 OFFSET $9"""

# A lead's deals, newest first (deals_lead).
DEALS_OF_LEAD = f"""{_SELECT} WHERE lead_id = $1 AND tenant_id = $2
ORDER BY created_at DESC, id DESC LIMIT $3"""

# Erasing a lead unlinks its deals: they are the business's record, not the person's data.
UNLINK_LEAD = f"""
UPDATE deals SET lead_id = NULL, updated_at = $3 WHERE lead_id = $1 AND tenant_id = $2
RETURNING {_COLUMNS}
"""

# The pipeline: per currency, and per currency and stage, the deals, their value and their
# value weighted by probability (a deal without a value or probability adds nothing to it).
PIPELINE = """
SELECT GROUPING(stage) = 0 AS by_stage, currency, stage, count(*) AS deals,
       coalesce(sum(value), 0) AS value,
       coalesce(round(sum(value * probability) / 100, 4), 0) AS weighted_value
FROM deals WHERE tenant_id = $1
GROUP BY GROUPING SETS ((currency, stage), (currency))
"""
