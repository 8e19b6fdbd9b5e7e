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
