"""Fixed values shared across the gateway, each with the reason for its value."""

from __future__ import annotations

# Prefixes make an id's kind obvious in logs and support tickets (as Stripe's do).
TENANT_PREFIX = "ten"
KEY_PREFIX = "key"
LEAD_PREFIX = "lead"
EVENT_PREFIX = "evt"

# An API key is this prefix plus 43 url-safe characters (256 random bits): the prefix lets
# secret scanners recognise a leaked key; the entropy makes SHA-256 storage safe.
API_KEY_PREFIX = "lg_live_"
API_KEY_RANDOM_BYTES = 32
# How much of a key is kept in clear to recognise it in a listing: the prefix and 4 characters.
API_KEY_HINT_LENGTH = len(API_KEY_PREFIX) + 4

SCOPES = ("ingest", "read", "manage")


# Page size bounds for list endpoints, as the contract sets them.
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 100

# Free-text fields are bounded so one lead cannot bloat every index and webhook it touches.
MAX_TEXT_FIELD = 1000
MAX_IDEMPOTENCY_KEY = 255

REQUEST_ID_HEADER = "X-Request-Id"
# A client-sent request id is echoed only if it is a sane token; otherwise a new one is made.
MAX_REQUEST_ID = 200

ENDPOINT_PREFIX = "ep"
INBOUND_PREFIX = "inb"
DEAL_PREFIX = "deal"

# arq queue and job names shared by the gateway (which wakes) and the worker (which is woken).
# A queue of Leadgate's own, so an arq worker of another app on the same Redis never takes them.
QUEUE_NAME = "leadgate:queue"
# "Deliveries are due": the job that wakes a worker to claim from Postgres. One fixed job id, so
# that arq keeps at most one waiting however many gateways send it.
WAKE_JOB = "wake"
WAKE_JOB_ID = "leadgate:wake"
# The job older gateways sent per batch of deliveries; a worker takes it as a wake-up too.
DELIVER_JOB = "deliver"
# Redis pub/sub channel on which every worker publishes each attempt's outcome (`leadgate tail`).
OUTCOMES_CHANNEL = "leadgate:outcomes"

# The Postgres channel on which a change to an API key or a tenant is announced (schema.sql's
# trigger); each gateway process listens on it to drop the keys it remembers.
AUTH_CHANNEL = "leadgate_auth"
# How often the listening connection proves it still hears the channel (a NOTIFY of its own
# that must come back), and how long that may take: a connection that died silently is noticed
# within both, and until it is back the key cache is not trusted.
AUTH_LISTENER_HEARTBEAT = 2.0
AUTH_LISTENER_TIMEOUT = 2.0
# Reconnecting after a lost listener waits this long at first, doubling up to the maximum.
AUTH_LISTENER_RETRY_MIN = 0.1
AUTH_LISTENER_RETRY_MAX = 5.0
# JSONata expressions (endpoint templates, sender mappings) are tenant-written code run on the
# request path and in the worker's event loop, so each evaluation is bounded. A typical one takes
# about 10 µs; 50 ms is far beyond any honest expression and short enough that a runaway one
# stalls its process only briefly before it is stopped.
EXPRESSION_TIMEOUT_MS = 50
# Nested function calls an expression may make: deep enough for any recursion over a lead,
# shallow enough that the engine's own stack never overflows.
EXPRESSION_MAX_DEPTH = 200
# Items one step of an expression may produce (`[1..n]`, a map, a filter): a lead has tens.
EXPRESSION_MAX_SEQUENCE = 10_000
# The longest text an expression is saved with: a template for any CRM fits in a few kilobytes.
MAX_EXPRESSION_LENGTH = 50_000
# A rendered webhook body larger than this is a template error: a lead event is a few kilobytes,
# and a receiver should never be sent megabytes because a template went astray.
MAX_RENDERED_BODY = 256 * 1024
# A mapping's name, as used in `?mapping=NAME` and `leadgate keys create --mapping NAME`.
MAPPING_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# The dashboard's session cookie, and the header every non-GET request of a signed-in page must
# carry with the session's CSRF token. A session token carries 256 random bits, as a key does.
SESSION_COOKIE = "leadgate_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_TOKEN_BYTES = 32
# The live view's stream sends a comment this often so that proxies keep an idle stream open.
LIVE_KEEPALIVE_SECONDS = 15.0
# Outcomes buffered per live viewer; a viewer that falls this far behind misses the oldest.
LIVE_QUEUE_SIZE = 1000
# After losing Redis, the live view's subscriber tries again after this long.
LIVE_RECONNECT_SECONDS = 1.0
# Scoring rules a tenant may have, and tiers: every rule is evaluated on every change of every
# lead (about 1 µs each with jsonatapy), so a hundred keeps a postback's scoring well under a
# tenth of a millisecond; more rules than that are better expressed as fewer, richer ones.
MAX_SCORING_RULES = 100
MAX_SCORING_TIERS = 20
# A rule's `when` is a short boolean, not a template.
MAX_RULE_EXPRESSION = 2000
# A rule's points: a score stays far inside a Postgres integer even with a hundred rules.
MAX_RULE_POINTS = 1_000_000
# Rule and tier names: keys of `score_breakdown` and values of `?score_tier=`.
SCORING_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Leads the background rescore reads, scores and writes per transaction: large enough to make
# each statement worthwhile, small enough that its row locks are held only milliseconds.
RESCORE_BATCH = 500
# A rescore starts this long after the change of rules, so that postbacks already in flight
# (authenticated under the previous rules) have committed before it passes their leads.
RESCORE_START_DELAY_SECONDS = 1.0
# How long a gateway holds a rescore it works on; a gateway that dies leaves it to another after.
RESCORE_LEASE_SECONDS = 30
# Account counters: a tenant without a quota spreads its batches over this many rows a month,
# so that concurrent batches rarely wait for one another's commit on one row.
COUNTER_SHARDS = 8
