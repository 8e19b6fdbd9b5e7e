"""The worker's SQL, named: claiming due deliveries, recording outcomes, endpoint health."""

from __future__ import annotations

# Claim up to $1 due deliveries, oldest due first, skipping any another worker is claiming.
# A claim is a lease: next_attempt_at moves to its end, so a delivery whose worker dies comes
# due again by itself, and the claim's index scan never walks past what is in flight. On an
# ordered endpoint, a lead's delivery waits while an earlier one of the same lead is pending.
CLAIM = """
WITH picked AS (
    SELECT d.id FROM deliveries d
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND NOT (d.ordered AND EXISTS (
          SELECT 1 FROM deliveries p
          WHERE p.endpoint_id = d.endpoint_id AND p.lead_id = d.lead_id
            AND p.state = 'pending' AND p.ordered
            AND (p.first_due_at, p.seq) < (d.first_due_at, d.seq)))
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d SET leased_until = now() + make_interval(secs => $2),
    next_attempt_at = now() + make_interval(secs => $2), updated_at = now()
FROM picked, events e, endpoints ep
WHERE d.id = picked.id AND e.id = d.event_id AND ep.id = d.endpoint_id
RETURNING d.id, d.tenant_id, d.event_id, d.endpoint_id, d.lead_id, d.event_type,
          d.attempt_count, d.tries, d.ordered, e.body, d.body AS rendered_body, ep.template,
          ep.url, ep.headers, ep.signature, ep.secret,
          CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
              AS previous_secret,
          ep.enabled, ep.rate_limit, ep.consecutive_failures, ep.circuit_open_until,
          ep.failing_since, ep.template, d.body AS rendered_body, e.traceparent
"""

# When the next pending delivery not yet due will be: a worker with nothing to do sleeps until
# then (or LEADGATE_RELAY_INTERVAL, whichever is sooner).
NEXT_DUE = """
SELECT min(next_attempt_at) FROM deliveries WHERE state = 'pending' AND next_attempt_at > now()
"""

# One statement records a whole flush: the attempts, and each delivery's new state. A delivery
# cancelled (its lead stopped) while its attempt was in flight stays cancelled; one deleted
# meanwhile (its endpoint was) is left out, so it cannot fail the others.
RECORD = """
WITH attempts AS (
    INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status, latency_ms,
                                   outcome, error, response_body, tenant_id)
    SELECT a.* FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::int[],
                           $5::float8[], $6::text[], $7::text[], $8::text[], $9::text[])
        AS a (delivery_id, attempt, started_at, status, latency_ms, outcome, error,
              response_body, tenant_id)
    WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id)
)
UPDATE deliveries d SET
    state = u.state, attempt_count = d.attempt_count + u.attempted, tries = u.tries,
    next_attempt_at = u.next_attempt_at, leased_until = NULL,
    last_status = coalesce(u.status, d.last_status), last_error = u.error, updated_at = now()
FROM unnest($10::text[], $11::text[], $12::int[], $13::int[], $14::timestamptz[],
            $15::int[], $16::text[])
    AS u (id, state, attempted, tries, next_attempt_at, status, error)
WHERE d.id = u.id AND d.state = 'pending'
"""

# Give deliveries back without an attempt (shutdown, circuit open, rate limited), due again at
# the given time.
RELEASE = """
UPDATE deliveries d SET leased_until = NULL, next_attempt_at = u.next_attempt_at,
    updated_at = now()
FROM unnest($1::text[], $2::timestamptz[]) AS u (id, next_attempt_at)
WHERE d.id = u.id AND d.state = 'pending'
"""

# What one flush's attempts say about each endpoint, in one statement: a success clears its
# failures; $2 failed attempts more open the circuit at the threshold $3 for $4 seconds, and
# disable it after failing for $5 seconds without a success; a 410 disables it at once.
# Returns each endpoint touched, with whether it is still enabled.
UPDATE_HEALTH = """
UPDATE endpoints ep SET
    consecutive_failures = CASE WHEN u.succeeded THEN 0
                                ELSE ep.consecutive_failures + u.failures END,
    failing_since = CASE WHEN u.succeeded THEN NULL ELSE coalesce(ep.failing_since, now()) END,
    circuit_open_until = CASE
        WHEN NOT u.succeeded AND ep.consecutive_failures + u.failures >= $2
        THEN now() + make_interval(secs => $3) END,
    enabled = ep.enabled AND NOT u.gone AND (u.succeeded
        OR coalesce(ep.failing_since, now()) > now() - make_interval(secs => $4)),
    disabled_reason = CASE
        WHEN NOT ep.enabled THEN ep.disabled_reason
        WHEN u.gone THEN 'the receiver answered 410 Gone'
        WHEN NOT u.succeeded AND coalesce(ep.failing_since, now())
                                 <= now() - make_interval(secs => $4)
        THEN 'failing without a success since '
             || to_char(ep.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        ELSE ep.disabled_reason END,
    updated_at = now()
FROM unnest($1::text[], $5::int[], $6::bool[], $7::bool[]) AS u (id, failures, succeeded, gone)
WHERE ep.id = u.id
RETURNING ep.id, ep.enabled, ep.disabled_reason
"""

# Once an endpoint is disabled its waiting deliveries end `failed`, visible and replayable;
# those of this flush keep the state just recorded.
FAIL_PENDING_OF_ENDPOINTS = """
UPDATE deliveries SET state = 'failed', last_error = 'endpoint disabled: ' || u.reason,
    leased_until = NULL, updated_at = now()
FROM unnest($1::text[], $2::text[]) AS u (endpoint_id, reason)
WHERE deliveries.endpoint_id = u.endpoint_id AND deliveries.state = 'pending'
  AND NOT (deliveries.id = ANY ($3::text[]))
"""
