"""The deliveries API's SQL, named."""

from __future__ import annotations

_COLUMNS = """d.id, d.event_id, d.endpoint_id, d.lead_id, d.event_type, d.state, d.attempt_count,
    d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.updated_at"""

_FILTERS = """
WHERE d.tenant_id = $1
  AND ($2::text IS NULL OR d.endpoint_id = $2)
  AND ($3::text IS NULL OR d.lead_id = $3)
  AND ($4::text IS NULL OR d.event_type = $4)
  AND ($5::text IS NULL OR d.state = $5)
"""

LIST_DELIVERIES = f"""
SELECT {_COLUMNS} FROM deliveries d {_FILTERS}
ORDER BY d.created_at DESC, d.id DESC LIMIT $6 OFFSET $7
"""

COUNT_DELIVERIES = f"SELECT count(*) FROM deliveries d {_FILTERS}"

GET_DELIVERY = f"SELECT {_COLUMNS} FROM deliveries d WHERE d.id = $1 AND d.tenant_id = $2"

LIST_ATTEMPTS = """
SELECT attempt, started_at, status, latency_ms, outcome, error, response_body
FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id
"""

RECENT_DELIVERIES_OF_LEAD = f"""
SELECT {_COLUMNS} FROM deliveries d WHERE d.lead_id = $1 AND d.tenant_id = $2
ORDER BY d.created_at DESC, d.id DESC LIMIT $3
"""

# A retry or replay gives the delivery the whole retry schedule again, from now; one being sent
# at this moment is left alone (its attempt decides). A templated body kept from an earlier
# rendering is dropped, so the endpoint's current template renders it again.
RESTART = f"""
UPDATE deliveries d SET state = 'pending', tries = 0, next_attempt_at = now(),
    leased_until = NULL, last_error = NULL, body = NULL, updated_at = now()
WHERE d.id = $1 AND d.tenant_id = $2 AND d.state <> 'pending'
RETURNING {_COLUMNS}
"""

REPLAY_ENDPOINT = """
UPDATE deliveries SET state = 'pending', tries = 0, next_attempt_at = now(),
    leased_until = NULL, last_error = NULL, body = NULL, updated_at = now()
WHERE endpoint_id = $1 AND tenant_id = $2 AND created_at >= $3 AND state = ANY ($4::text[])
RETURNING id
"""

# Stopping a lead's sequence cancels every delivery not yet delivered, scheduled ones included.
# Found by the lead alone (deliveries_lead): the tenant is checked on those rows, in a form no
# index serves, so a generic plan cannot walk the tenant's whole history (deliveries_tenant).
STOP_LEAD = """
UPDATE deliveries SET state = 'cancelled', leased_until = NULL, updated_at = now()
WHERE lead_id = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND state = 'pending'
"""

# By id alone (see gateway/leads/sql.py GET_LEAD).
LEAD_EXISTS = """
SELECT true FROM leads WHERE id = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND deleted_at IS NULL
"""

ENDPOINT_EXISTS = "SELECT true FROM endpoints WHERE id = $1 AND tenant_id = $2"

ENDPOINT_TENANT = "SELECT tenant_id FROM endpoints WHERE id = $1"
