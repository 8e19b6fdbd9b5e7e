"""The timeline's SQL, named.

A page reads each source newest first by its own (lead, time, id) index, at most a page from
each, and keeps the newest of those: the cost is a page's rows, however long the lead's history.
The sort key is (time, rank, id): rank orders items of one instant across sources (stage moves,
then messages, then events), id (or the history row's number) within one.

$1 the lead, $2 its tenant, ($3, $4, $5, $6) the cursor's key: time, rank, text id, history
row (the first page: 'infinity', 3, NULL, NULL), $7 the page size.
"""

from __future__ import annotations

MESSAGE, EVENT, STAGE = 1, 0, 2
FIRST_RANK = 3  # above every rank: the first page starts before everything

# Events that the timeline shows through another source: a stage move by its history row (kept
# for ever, where the event is pruned with its deliveries), an inbound event by its message.
_SHOWN_ELSEWHERE = """(e.type = 'lead.stage_changed'
    OR EXISTS (SELECT 1 FROM inbound_events x WHERE x.event_id = e.id))"""

PAGE = f"""
WITH page AS (
    (SELECT {MESSAGE} AS rank, i.received_at AS at, i.id, NULL::bigint AS seq, i.type, i.body,
            i.source, i.event_id, NULL::timestamptz AS deliver_at, NULL::text AS from_stage,
            NULL::text AS to_stage, NULL::boolean AS forced, NULL::text AS api_key_id
     FROM inbound_events i
     WHERE i.lead_id = $1 AND i.received_at <= $3 AND i.tenant_id = $2
       AND (i.received_at < $3 OR $4 > {MESSAGE} OR ($4 = {MESSAGE} AND i.id < $5))
     ORDER BY i.received_at DESC, i.id DESC LIMIT $7)
    UNION ALL
    (SELECT {EVENT}, e.created_at, e.id, NULL, e.type, e.body, NULL, e.id, e.deliver_at, NULL,
            NULL, NULL, NULL
     FROM events e
     WHERE e.lead_id = $1 AND e.created_at <= $3 AND e.tenant_id = $2
       AND (e.created_at < $3 OR $4 > {EVENT} OR ($4 = {EVENT} AND e.id < $5))
       AND NOT {_SHOWN_ELSEWHERE}
     ORDER BY e.created_at DESC, e.id DESC LIMIT $7)
    UNION ALL
    (SELECT {STAGE}, h.at, NULL, h.id, NULL, NULL, NULL, NULL, NULL, h.from_stage, h.to_stage,
            h.forced, h.api_key_id
     FROM stage_history h
     WHERE h.lead_id = $1 AND h.at <= $3 AND h.tenant_id = $2
       AND (h.at < $3 OR $4 > {STAGE} OR ($4 = {STAGE} AND h.id < $6))
     ORDER BY h.at DESC, h.id DESC LIMIT $7)
), newest AS (
    SELECT * FROM page ORDER BY at DESC, rank DESC, id DESC, seq DESC LIMIT $7
)
-- A stage move's webhook: the lead.stage_changed event written with it, while it is kept.
SELECT n.rank, n.at, n.id, n.seq, n.type, n.body, n.source, n.deliver_at, n.from_stage,
       n.to_stage, n.forced, n.api_key_id, coalesce(n.event_id, s.id) AS event_id
FROM newest n
LEFT JOIN LATERAL (
    SELECT s.id FROM events s
    WHERE n.rank = {STAGE} AND s.lead_id = $1 AND s.created_at = n.at
      AND s.type = 'lead.stage_changed'
      AND s.body::jsonb -> 'data' ->> 'stage' = n.to_stage
    ORDER BY s.id LIMIT 1
) s ON true
ORDER BY n.at DESC, n.rank DESC, n.id DESC, n.seq DESC
"""

COUNT = f"""
SELECT (SELECT count(*) FROM inbound_events i WHERE i.lead_id = $1 AND i.tenant_id = $2)
     + (SELECT count(*) FROM events e
        WHERE e.lead_id = $1 AND e.tenant_id = $2 AND NOT {_SHOWN_ELSEWHERE})
     + (SELECT count(*) FROM stage_history h WHERE h.lead_id = $1 AND h.tenant_id = $2)
"""

# The page's events' deliveries, by event: the events are the tenant's (read by its lead), and
# naming only the event keeps every plan on the (event_id, endpoint_id) key.
DELIVERIES = """
SELECT event_id, id, endpoint_id, state, attempt_count, last_status, next_attempt_at
FROM deliveries WHERE event_id = ANY ($1::text[])
ORDER BY event_id, endpoint_id
"""
