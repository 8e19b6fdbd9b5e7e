"""The worker's SQL, named: claiming, recording attempts, endpoint health, the relay sweep."""

from __future__ import annotations

# Take a lease on deliveries that are still pending, due, and not held by another worker.
# Two workers claiming one delivery serialise on its row; the second then sees the lease and
# skips it, so a delivery is never sent by two workers at the same moment.
CLAIM = """
UPDATE deliveries d SET leased_until = now() + make_interval(secs => $2), updated_at = now()
FROM events e, endpoints ep
WHERE d.id = ANY ($1::text[]) AND d.state = 'pending' AND d.next_attempt_at <= now()
  AND (d.leased_until IS NULL OR d.leased_until < now())
  AND e.id = d.event_id AND ep.id = d.endpoint_id
RETURNING d.id, d.tenant_id, d.event_id, d.endpoint_id, d.lead_id, d.event_type,
          d.attempt_count, d.tries, e.body, ep.url, ep.headers, ep.signature, ep.secret,
          CASE WHEN ep.previous_secret_expires_at > now() THEN ep.previous_secret END
              AS previous_secret,
          ep.enabled, ep.rate_limit, ep.consecutive_failures, ep.circuit_open_until,
          ep.failing_since, ep.template, d.body AS rendered_body
"""

# One statement records a whole batch: the attempts, and each delivery's new state. A delivery
# cancelled (its lead stopped) while its attempt was in flight stays cancelled.
RECORD = """
WITH attempts AS (
    INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status, latency_ms,
                                   outcome, error, response_body, tenant_id)
    SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::int[],
                         $5::float8[], $6::text[], $7::text[], $8::text[], $17::text[])
)
UPDATE deliveries d SET
    state = u.state, attempt_count = d.attempt_count + u.attempted, tries = u.tries,
    next_attempt_at = u.next_attempt_at, enqueued_at = u.enqueued_at, leased_until = NULL,
    last_status = coalesce(u.status, d.last_status), last_error = u.error, updated_at = now()
FROM unnest($9::text[], $10::text[], $11::int[], $12::int[], $13::timestamptz[],
            $14::timestamptz[], $15::int[], $16::text[])
    AS u (id, state, attempted, tries, next_attempt_at, enqueued_at, status, error)
WHERE d.id = u.id AND d.state = 'pending'
"""

# Give deliveries back without an attempt (shutdown, circuit open, rate limited). One due now
# is left for the relay's next sweep; one due later is signalled for then by the caller.
RELEASE = """
UPDATE deliveries d SET leased_until = NULL, next_attempt_at = u.next_attempt_at,
    enqueued_at = CASE WHEN u.next_attempt_at <= now() THEN NULL ELSE u.next_attempt_at END,
    updated_at = now()
FROM unnest($1::text[], $2::timestamptz[]) AS u (id, next_attempt_at)
WHERE d.id = u.id AND d.state = 'pending'
"""

ENDPOINT_SUCCEEDED = """
UPDATE endpoints SET consecutive_failures = 0, failing_since = NULL, circuit_open_until = NULL
WHERE id = $1 AND (consecutive_failures > 0 OR failing_since IS NOT NULL)
"""

# $2 failed attempts more; open the circuit at the threshold $3 for $4 seconds; disable after
# failing for $5 seconds without a success.
ENDPOINT_FAILED = """
UPDATE endpoints SET
    consecutive_failures = consecutive_failures + $2,
    failing_since = coalesce(failing_since, now()),
    circuit_open_until = CASE WHEN consecutive_failures + $2 >= $3
                              THEN now() + make_interval(secs => $4) END,
    enabled = enabled AND coalesce(failing_since, now()) > now() - make_interval(secs => $5),
    disabled_reason = CASE
        WHEN enabled AND coalesce(failing_since, now()) <= now() - make_interval(secs => $5)
        THEN 'failing without a success since '
             || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        ELSE disabled_reason END,
    updated_at = now()
WHERE id = $1
RETURNING enabled, consecutive_failures, circuit_open_until
"""

DISABLE_ENDPOINT = """
UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = now()
WHERE id = $1 AND enabled
"""

# Once an endpoint is disabled its waiting deliveries end `failed`, visible and replayable.
FAIL_PENDING_OF_ENDPOINT = """
UPDATE deliveries SET state = 'failed', last_error = $2, leased_until = NULL, updated_at = now()
WHERE endpoint_id = $1 AND state = 'pending' AND NOT (id = ANY ($3::text[]))
"""

# The relay: deliveries due, not leased, whose last signal is older than $1 seconds (or that
# never had one). Marking them signalled in the same statement keeps two relays from both
# sending the same batch.
SWEEP_DUE = """
UPDATE deliveries SET enqueued_at = now()
WHERE id IN (
    SELECT id FROM deliveries
    WHERE state = 'pending' AND next_attempt_at <= now()
      AND (leased_until IS NULL OR leased_until < now())
      AND (enqueued_at IS NULL OR enqueued_at < now() - make_interval(secs => $1))
    ORDER BY next_attempt_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""
