"""The dashboard's SQL, named: its sessions, and nothing of the domain (that is the API's)."""

from __future__ import annotations

CREATE_SESSION = """
INSERT INTO dashboard_sessions (token_hash, tenant_id, key_id, csrf_token, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
RETURNING expires_at
"""

# A session is the key that signed in: one round trip checks the session, the key (not
# revoked) and loads what every request needs of the tenant, as API-key authentication does.
SESSION_PRINCIPAL = """
SELECT s.token_hash, s.csrf_token, k.id AS key_id, k.scopes, t.id AS tenant_id, t.stages,
       t.exit_stages, t.match_phone, t.rate_limit, t.scope_rate_limits, k.mapping, t.scoring,
       t.converted_stages, t.monthly_quota
FROM dashboard_sessions s
JOIN api_keys k ON k.id = s.key_id AND k.tenant_id = s.tenant_id
JOIN tenants t ON t.id = k.tenant_id
WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL
"""

END_SESSION = "DELETE FROM dashboard_sessions WHERE token_hash = $1"

PRUNE_SESSIONS = "DELETE FROM dashboard_sessions WHERE expires_at <= now()"
