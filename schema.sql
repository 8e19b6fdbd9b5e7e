-- Leadgate schema. Applied by `leadgate migrate`; every statement is idempotent, so running it
-- twice changes nothing. Every tenant-owned row carries tenant_id; Postgres is the source of truth.
--
-- schema-version: 6
-- Raise the version with every change to this file. Changes are expand/contract
-- (docs/MIGRATIONS.md): a release adds what it needs, and drops only what the release before it
-- had already stopped using.

-- Each schema.sql `leadgate migrate` applied: its declared version, its SHA-256 and the release.
CREATE TABLE IF NOT EXISTS schema_version (
    version           integer NOT NULL,
    checksum          text NOT NULL,
    leadgate_version  text NOT NULL,
    applied_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, checksum)
);

CREATE TABLE IF NOT EXISTS tenants (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    -- The ordered pipeline a postback may only move forward along, and the exit stages
    -- reachable from any stage (and left again only by force or a manual change).
    stages        text[] NOT NULL DEFAULT '{new,contacted,qualified,proposal,won}',
    exit_stages   text[] NOT NULL DEFAULT '{lost}',
    match_phone   boolean NOT NULL DEFAULT false,
    rate_limit    integer CHECK (rate_limit IS NULL OR rate_limit > 0),
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Requests per minute per key for one scope ({"ingest": 20000}), over rate_limit and the default.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS scope_rate_limits jsonb NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS api_keys (
    id            text PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- SHA-256 of the whole key; keys carry 256 random bits, so a fast hash is enough.
    key_hash      bytea NOT NULL UNIQUE,
    -- The first characters of the key, to recognise it in listings; never enough to use it.
    hint          text NOT NULL,
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE IF NOT EXISTS leads (
    id                      text PRIMARY KEY,
    tenant_id               text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    external_id             text,
    -- Stored normalised: email trimmed and lower-cased, phone in E.164.
    email                   text,
    phone                   text,
    first_name              text,
    last_name               text,
    company                 text,
    stage                   text NOT NULL,
    source                  text,
    domain                  text,
    campaign                text,
    utm_source              text,
    utm_medium              text,
    utm_campaign            text,
    utm_term                text,
    utm_content             text,
    referrer                text,
    ip_address              text,
    user_agent              text,
    browser                 text,
    device_type             text,
    form_completion_percent double precision,
    form_fields_completed   integer,
    form_fields_total       integer,
    estimated_value         double precision,
    custom_data             jsonb NOT NULL DEFAULT '{}',
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    -- Set when the lead's personal data is erased; the row stays so its events keep a referent.
    deleted_at              timestamptz
);
-- The matching keys: one live lead per external id and per normalised email in a tenant. The
-- key leads each index: a lookup by key has no other index to choose, whatever the planner
-- knows of the table (the tenant comes second; see FETCH_CANDIDATES).
CREATE UNIQUE INDEX IF NOT EXISTS leads_external_id_tenant
    ON leads (external_id, tenant_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS leads_email_tenant
    ON leads (email, tenant_id) WHERE email IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_phone_tenant
    ON leads (phone, tenant_id) WHERE phone IS NOT NULL;
-- The same keys with the tenant first, as earlier versions had them; the ones above replace them.
DROP INDEX IF EXISTS leads_tenant_external_id;
DROP INDEX IF EXISTS leads_tenant_email;
DROP INDEX IF EXISTS leads_tenant_phone;
-- Listing and analytics use leads_tenant_created_id, defined below with the columns it
-- carries. No index covers updated_at: it changes on every update, and indexing it would make
-- every update rewrite every index (no HOT updates).

CREATE TABLE IF NOT EXISTS stage_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL,
    lead_id     text NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    from_stage  text,
    to_stage    text NOT NULL,
    forced      boolean NOT NULL DEFAULT false,
    api_key_id  text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stage_history_lead ON stage_history (lead_id, id);

-- The transactional outbox: an event is written in the same transaction as the change that
-- caused it, and never changes afterwards. `body` is the exact Standard Webhooks envelope that
-- is signed and sent, so every retry carries the same bytes.
CREATE TABLE IF NOT EXISTS events (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    type        text NOT NULL,
    lead_id     text,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- A scheduled follow-up is delivered at this time rather than at once.
    deliver_at  timestamptz
);
CREATE INDEX IF NOT EXISTS events_lead ON events (lead_id) WHERE lead_id IS NOT NULL;
-- (schema-version 5) The W3C traceparent of the request that wrote the event, with tracing on;
-- its delivery attempts continue that trace.
ALTER TABLE events ADD COLUMN IF NOT EXISTS traceparent text;

-- Idempotency keys: the first response to a key, stored in the same transaction as the change
-- it made, replayed for 24 hours. A request in flight holds an advisory lock on the key instead
-- of a row, so a crashed request never leaves a key stuck.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant_id     text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key           text NOT NULL,
    fingerprint   bytea NOT NULL,
    status        smallint NOT NULL,
    content_type  text NOT NULL,
    body          bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);

-- Webhook endpoints. The signing secret is kept in clear because signing needs it; during a
-- rotation the previous secret signs too, until previous_secret_expires_at.
CREATE TABLE IF NOT EXISTS endpoints (
    id                          text PRIMARY KEY,
    tenant_id                   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                         text NOT NULL,
    description                 text,
    -- Exact types, `prefix.*`, or `*`.
    event_types                 text[] NOT NULL DEFAULT '{*}',
    headers                     jsonb NOT NULL DEFAULT '{}',
    rate_limit                  integer CHECK (rate_limit IS NULL OR rate_limit > 0),
    enabled                     boolean NOT NULL DEFAULT true,
    disabled_reason             text,
    -- {"scheme": "standard"} or {"scheme": "hmac-sha256-hex", "header": …, "prefix": …}
    signature                   jsonb NOT NULL DEFAULT '{"scheme": "standard"}',
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    -- Health: consecutive failed attempts open the circuit until circuit_open_until; an
    -- endpoint failing since failing_since for too long is disabled.
    consecutive_failures        integer NOT NULL DEFAULT 0,
    circuit_open_until          timestamptz,
    failing_since               timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS endpoints_tenant ON endpoints (tenant_id) WHERE enabled;

-- One delivery per event and matching endpoint, written in the event's own transaction.
CREATE TABLE IF NOT EXISTS deliveries (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id         text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_id      text NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    lead_id          text,
    event_type       text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'succeeded', 'failed', 'cancelled')),
    -- attempt_count counts every attempt ever; tries counts those since the retry schedule last
    -- (re)started, so a manual retry or replay gets the whole schedule again.
    attempt_count    integer NOT NULL DEFAULT 0,
    tries            integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    -- A worker holds a delivery while it sends it; an expired lease means the worker died.
    leased_until     timestamptz,
    -- When a "deliver this" signal last went to the queue; the relay re-sends stale ones.
    enqueued_at      timestamptz,
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_lead ON deliveries (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries (endpoint_id, created_at);
CREATE INDEX IF NOT EXISTS deliveries_tenant ON deliveries (tenant_id, created_at);

CREATE TABLE IF NOT EXISTS delivery_attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt        integer NOT NULL,
    started_at     timestamptz NOT NULL,
    status         integer,
    latency_ms     double precision NOT NULL,
    outcome        text NOT NULL,
    error          text,
    response_body  text
);
CREATE INDEX IF NOT EXISTS delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Leads a messaging provider reported opted out; later postbacks leave this as it is.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS opted_out_at timestamptz;

-- Inbound sources: providers that post events to /v1/inbound/{name}, signed with `secret`.
CREATE TABLE IF NOT EXISTS sources (
    tenant_id          text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name               text NOT NULL,
    secret             text NOT NULL,
    signature          jsonb NOT NULL DEFAULT '{"scheme": "standard"}',
    tolerance_seconds  integer NOT NULL DEFAULT 300 CHECK (tolerance_seconds > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- Every inbound event once: the provider's id is unique per tenant and source, so a resent
-- event finds its first copy and changes nothing. `body` is the raw request body as received.
CREATE TABLE IF NOT EXISTS inbound_events (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    source       text NOT NULL,
    external_id  text NOT NULL,
    type         text NOT NULL,
    lead_id      text,
    body         text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, source, external_id)
);
CREATE INDEX IF NOT EXISTS inbound_events_lead ON inbound_events (lead_id) WHERE lead_id IS NOT NULL;

-- The furthest pipeline stage a lead has reached (a forced move back does not lower it): the
-- funnel counts a lead at every stage up to this one.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS furthest_stage text;
-- Listing order (newest first, then id, for the keyset cursor); analytics read leads by
-- creation time (erased leads included) from it alone, without touching the heap.
CREATE INDEX IF NOT EXISTS leads_tenant_created_id ON leads (tenant_id, created_at DESC, id DESC)
    INCLUDE (stage, furthest_stage, source, campaign);
ALTER TABLE delivery_attempts ADD COLUMN IF NOT EXISTS tenant_id text;
CREATE INDEX IF NOT EXISTS delivery_attempts_tenant_started
    ON delivery_attempts (tenant_id, started_at) INCLUDE (latency_ms, outcome);

-- Ordered endpoints: one lead's deliveries to such an endpoint are attempted one at a time, in
-- the order they are due (first_due_at, then seq: the order they were written in), each after
-- the one before it ended. A scheduled follow-up takes its place in that order at its delivery
-- time. A delivery keeps the endpoint's choice as it was when the delivery was made.
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS ordered boolean NOT NULL DEFAULT false;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS ordered boolean NOT NULL DEFAULT false;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS seq bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS first_due_at timestamptz;
CREATE INDEX IF NOT EXISTS deliveries_ordered
    ON deliveries (endpoint_id, lead_id, first_due_at, seq) WHERE state = 'pending' AND ordered;
-- Workers claim due deliveries straight from Postgres (deliveries_due); a claim pushes
-- next_attempt_at to the end of its lease, so a killed worker's deliveries come due again by
-- themselves. enqueued_at is no longer written.

-- An ed25519 endpoint's public key (whpk_…), kept in clear: receivers verify with it. Its
-- private key, like every other secret, is in `secret` (and `previous_secret`), encrypted under
-- LEADGATE_SECRET_KEYS.
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS public_key text;

-- A change to an API key or a tenant is announced on the channel `leadgate_auth` when its
-- transaction commits (NOTIFY is delivered only then), so every gateway process drops the keys
-- it remembers at once: a revocation, or a tenant's new pipeline, rate limit or phone matching,
-- holds from the next request on, whichever tool made the change. Keep hot counters off these
-- rows: every update of one is such an announcement.
CREATE OR REPLACE FUNCTION leadgate_auth_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('leadgate_auth', TG_TABLE_NAME || ':' || OLD.id);
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER api_keys_changed AFTER UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION leadgate_auth_changed();
CREATE OR REPLACE TRIGGER tenants_changed AFTER UPDATE OR DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION leadgate_auth_changed();

-- Dialects. An endpoint's payload template (JSONata, compiled on save); NULL sends the event.
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS template text;
-- A templated delivery's body, rendered at its first attempt and sent unchanged by every retry;
-- a manual retry or replay clears it, so the endpoint's current template renders it again.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS body text;
-- Sender mappings: named JSONata expressions from an incoming body to postback fields.
CREATE TABLE IF NOT EXISTS mappings (
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         text NOT NULL,
    expression   text NOT NULL,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);
-- The mapping a key's postbacks go through unless they name one with ?mapping=.
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS mapping text;
-- Dashboard sign-ins. The cookie carries a random token; only its SHA-256 is kept, as for API
-- keys. A session acts as the API key that signed in: revoking the key ends it at once, and
-- deleting the key (or its tenant) deletes it.
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token_hash  bytea PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_id      text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires ON dashboard_sessions (expires_at);
CREATE INDEX IF NOT EXISTS dashboard_sessions_key ON dashboard_sessions (key_id);

-- Lead scoring (docs/DOMAIN.md). A tenant's rule set, {"version", "rules", "tiers"}; NULL: no
-- rules, so its leads carry no score. On the tenants row, so that a change reaches every gateway
-- at its next request (the trigger above); the rescore's progress changes often and lives apart.
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS scoring jsonb;
-- The stages that count a lead as converted (NULL: the pipeline's last stage), and the number of
-- new leads a month (UTC) the tenant may receive (NULL: no quota).
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS converted_stages text[];
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS monthly_quota integer
    CHECK (monthly_quota IS NULL OR monthly_quota >= 0);
-- Each lead's score under its tenant's rules, computed by the gateway before every write.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS score integer;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS score_tier text;
ALTER TABLE leads ADD COLUMN IF NOT EXISTS score_breakdown jsonb;
-- The listing index carries the score too, so that analytics' tier mix is read from it alone
-- (index-only, as its other figures are). An install whose index predates the score has it
-- rebuilt once, here: writes to leads wait for the build (seconds at a million leads).
DO $$
BEGIN
    IF pg_get_indexdef('leads_tenant_created_id'::regclass) NOT LIKE '%score_tier%' THEN
        DROP INDEX leads_tenant_created_id;
        CREATE INDEX leads_tenant_created_id ON leads (tenant_id, created_at DESC, id DESC)
            INCLUDE (stage, furthest_stage, source, campaign, score_tier, score);
    END IF;
END
$$;
-- When the lead first reached a converted stage: it is counted as converted once, then.
ALTER TABLE leads ADD COLUMN IF NOT EXISTS converted_at timestamptz;
-- The background rescore after a change of rules: one row per tenant, for the latest version,
-- walking the tenant's leads newest first from (cursor_created_at, cursor_id).
CREATE TABLE IF NOT EXISTS scoring_rescores (
    tenant_id          text PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version            bigint NOT NULL,
    state              text NOT NULL CHECK (state IN ('pending', 'running', 'done')),
    done               bigint NOT NULL DEFAULT 0,
    total              bigint,
    changed            bigint NOT NULL DEFAULT 0,
    cursor_created_at  timestamptz,
    cursor_id          text,
    not_before         timestamptz NOT NULL DEFAULT now(),
    leased_until       timestamptz,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz
);
-- Account counters: leads created and converted per tenant and UTC month, written set-based in
-- the transaction of the change they count. A tenant without a quota spreads its batches over a
-- few shards, so concurrent batches rarely wait on one row; a tenant with a quota counts in
-- shard 0 alone, whose row lock makes the quota check exact. Created with the leads counted
-- that exist at the time (once: the block runs only while the table is missing).
DO $$
BEGIN
    IF to_regclass('tenant_monthly_counts') IS NULL THEN
        CREATE TABLE tenant_monthly_counts (
            tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            month      date NOT NULL,
            shard      smallint NOT NULL,
            created    bigint NOT NULL DEFAULT 0,
            converted  bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, month, shard)
        );
        UPDATE leads SET converted_at = leads.updated_at FROM tenants t
        WHERE t.id = leads.tenant_id AND leads.converted_at IS NULL
          AND t.stages[array_length(t.stages, 1)] IN (leads.stage, leads.furthest_stage);
        INSERT INTO tenant_monthly_counts (tenant_id, month, shard, created, converted)
        SELECT tenant_id, month, 0, sum(created), sum(converted) FROM (
            SELECT tenant_id, date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS month,
                   1 AS created, 0 AS converted FROM leads
            UNION ALL
            SELECT tenant_id, date_trunc('month', converted_at AT TIME ZONE 'UTC')::date, 0, 1
            FROM leads WHERE converted_at IS NOT NULL
        ) c GROUP BY tenant_id, month;
    END IF;
END
$$;
-- The lead timeline and deals (docs/DOMAIN.md).
-- A lead's timeline reads each of its three sources newest first, a page at a time: these
-- indexes lead with the lead and order by time, so a page costs its own rows, however long the
-- lead's history. They replace the lead-only ones, which every lookup by lead also finds here.
CREATE INDEX IF NOT EXISTS events_lead_created
    ON events (lead_id, created_at, id) WHERE lead_id IS NOT NULL;
DROP INDEX IF EXISTS events_lead;
CREATE INDEX IF NOT EXISTS inbound_events_lead_received
    ON inbound_events (lead_id, received_at, id) WHERE lead_id IS NOT NULL;
DROP INDEX IF EXISTS inbound_events_lead;
CREATE INDEX IF NOT EXISTS stage_history_lead_at ON stage_history (lead_id, at, id);
-- The outbox event an inbound event was fanned out as: the timeline shows the message once,
-- with that event's deliveries.
ALTER TABLE inbound_events ADD COLUMN IF NOT EXISTS event_id text;
CREATE INDEX IF NOT EXISTS inbound_events_event ON inbound_events (event_id)
    WHERE event_id IS NOT NULL;

-- The currency a deal takes when it names none (ISO 4217).
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS default_currency text NOT NULL DEFAULT 'USD';

-- Deals: an amount of money at a stage, with a probability, optionally a lead's. The value is
-- exact (numeric: 11 digits before the point, 4 after, 15 in all, so JSON carries it exactly
-- as a JavaScript number). Erasing a lead unlinks its deals (lead_id NULL); a lead row is
-- never deleted, the foreign key only guards against ids that never existed.
CREATE TABLE IF NOT EXISTS deals (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id      text REFERENCES leads (id) ON DELETE SET NULL,
    title        text NOT NULL,
    value        numeric(15, 4) CHECK (value >= 0),
    currency     text NOT NULL,
    stage        text,
    probability  smallint CHECK (probability BETWEEN 0 AND 100),
    custom_data  jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- Listing order (newest first, then id, for the keyset cursor); analytics' pipeline reads the
-- tenant's deals from it alone.
CREATE INDEX IF NOT EXISTS deals_tenant_created_id ON deals (tenant_id, created_at DESC, id DESC)
    INCLUDE (stage, currency, value, probability);
CREATE INDEX IF NOT EXISTS deals_lead ON deals (lead_id, created_at, id) WHERE lead_id IS NOT NULL;
