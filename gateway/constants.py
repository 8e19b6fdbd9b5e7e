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

# arq queue and job names shared by the gateway (which signals) and the worker (which runs).
# A queue of Leadgate's own, so an arq worker of another app on the same Redis never takes them.
QUEUE_NAME = "leadgate:queue"
DELIVER_JOB = "deliver"
# Redis pub/sub channel on which every worker publishes each attempt's outcome (`leadgate tail`).
OUTCOMES_CHANNEL = "leadgate:outcomes"

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
