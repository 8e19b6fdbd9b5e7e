"""The endpoints' SQL, named."""

from __future__ import annotations

_COLUMNS = """id, url, description, event_types, headers, rate_limit, enabled, ordered,
    disabled_reason, signature, consecutive_failures, circuit_open_until, failing_since,
    created_at, updated_at, public_key, template"""

CREATE_ENDPOINT = f"""
INSERT INTO endpoints (id, tenant_id, url, description, event_types, headers, rate_limit,
                       enabled, signature, secret, public_key, ordered, template)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
RETURNING {_COLUMNS}
"""

LIST_ENDPOINTS = f"SELECT {_COLUMNS} FROM endpoints WHERE tenant_id = $1 ORDER BY created_at, id"

GET_ENDPOINT = f"SELECT {_COLUMNS} FROM endpoints WHERE id = $1 AND tenant_id = $2"

GET_SIGNING = """
SELECT signature, secret, public_key FROM endpoints WHERE id = $1 AND tenant_id = $2
"""

# NULL leaves a column as it is. Enabling an endpoint clears its failure record. A new signature
# sets the public key ($13, NULL but for ed25519); a new scheme drops the previous secret, which
# could not sign under it.
UPDATE_ENDPOINT = f"""
UPDATE endpoints SET
    url = coalesce($3, url),
    description = CASE WHEN $4 THEN $5 ELSE description END,
    event_types = coalesce($6, event_types),
    headers = coalesce($7, headers),
    rate_limit = CASE WHEN $8 THEN $9 ELSE rate_limit END,
    ordered = coalesce($14, ordered),
    signature = coalesce($10, signature),
    secret = coalesce($12, secret),
    public_key = CASE WHEN $10 IS NULL THEN public_key ELSE $13 END,
    previous_secret = CASE WHEN $10->>'scheme' IS DISTINCT FROM signature->>'scheme'
                           AND $10 IS NOT NULL THEN NULL ELSE previous_secret END,
    template = CASE WHEN $15 THEN $16 ELSE template END,
    enabled = coalesce($11, enabled),
    disabled_reason = CASE WHEN $11 THEN NULL ELSE disabled_reason END,
    consecutive_failures = CASE WHEN $11 AND NOT enabled THEN 0 ELSE consecutive_failures END,
    failing_since = CASE WHEN $11 AND NOT enabled THEN NULL ELSE failing_since END,
    circuit_open_until = CASE WHEN $11 AND NOT enabled THEN NULL ELSE circuit_open_until END,
    updated_at = now()
WHERE id = $1 AND tenant_id = $2
RETURNING {_COLUMNS}
"""

DELETE_ENDPOINT = "DELETE FROM endpoints WHERE id = $1 AND tenant_id = $2 RETURNING id"

ROTATE_SECRET = """
UPDATE endpoints SET
    previous_secret = CASE WHEN $4 > 0 THEN secret END,
    previous_secret_expires_at = CASE WHEN $4 > 0 THEN now() + make_interval(secs => $4) END,
    secret = $3, public_key = $5, updated_at = now()
WHERE id = $1 AND tenant_id = $2
RETURNING previous_secret_expires_at
"""

DELIVERY_OF_EVENT = "SELECT id FROM deliveries WHERE event_id = $1"
