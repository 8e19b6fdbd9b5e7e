"""Prometheus metrics, defined once. `GET /metrics` serves them with two gauges read from
Postgres at scrape time (deliveries due and waiting, open circuits); a worker process serves
its own on LEADGATE_WORKER_METRICS_PORT. With LEADGATE_METRICS_TOKEN set, both answer only
`Authorization: Bearer <token>` (compared in constant time); unset, they are open.
"""

from __future__ import annotations

import asyncio
import hmac

import asyncpg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from pydantic import SecretStr

from gateway.appkeys import POOL, SETTINGS
from gateway.errors import Unauthorized

# Route templates, never raw paths, keep label cardinality bounded.
HTTP_REQUESTS = Counter(
    "leadgate_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "leadgate_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
INGEST = Counter(
    "leadgate_ingest_total",
    "Postbacks and lead creates by outcome: created, matched, replayed, rejected.",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "leadgate_rate_limited_total", "Requests refused with 429 by the per-key limit.", ["scope"]
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "leadgate_rate_limit_unavailable_total",
    "Requests let through unlimited because Redis could not be asked (fail open).",
)
DELIVERY_ATTEMPTS = Counter(
    "leadgate_delivery_attempts_total",
    "Webhook attempts by outcome: succeeded, retrying, failed.",
    ["outcome"],
)
DELIVERY_LATENCY = Histogram(
    "leadgate_delivery_attempt_duration_seconds",
    "Time from sending a webhook to its response.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PRUNED = Counter(
    "leadgate_pruned_rows_total", "Rows removed past their retention, by table.", ["table"]
)
DUE_WAITING = Gauge(
    "leadgate_deliveries_due_waiting", "Deliveries due now and not yet attempted successfully."
)
OPEN_CIRCUITS = Gauge("leadgate_open_circuits", "Endpoints whose circuit is open.")

COUNT_DUE_WAITING = """
SELECT count(*) FROM deliveries WHERE state = 'pending' AND next_attempt_at <= now()
"""
COUNT_OPEN_CIRCUITS = "SELECT count(*) FROM endpoints WHERE circuit_open_until > now()"

# A scrape never waits on a slow database for longer than this; the gauges keep their last value.
SCRAPE_QUERY_TIMEOUT = 2.0


async def refresh_gauges(pool: asyncpg.Pool) -> None:
    try:
        async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT):
            DUE_WAITING.set(await pool.fetchval(COUNT_DUE_WAITING))
            OPEN_CIRCUITS.set(await pool.fetchval(COUNT_OPEN_CIRCUITS))
    except (TimeoutError, OSError, asyncpg.PostgresError):
        pass


def allowed(authorization: str | None, token: SecretStr | None) -> bool:
    """Whether a scrape may read the metrics: always without a token, else with `Bearer token`."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


REFUSED = "send `Authorization: Bearer <LEADGATE_METRICS_TOKEN>` to read the metrics"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


async def metrics_view(request: web.Request) -> web.Response:
    if not allowed(request.headers.get("Authorization"), request.app[SETTINGS].metrics_token):
        raise Unauthorized(REFUSED, headers=dict(CHALLENGE))
    await refresh_gauges(request.app[POOL])
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
