"""Middlewares: request ids, the request log line, errors as the contract's body, and auth.

`observe` wraps everything: it gives the request an id (echoing a sane `X-Request-Id`), logs
one line when the response is ready, and turns any error into `{"error": {…}}` — an unexpected
exception becomes a 500 whose body says nothing about its cause. `authenticate` resolves the
API key of routes that declare a scope.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from gateway import jsonio, metrics
from gateway.appkeys import (
    KEYS,
    LIMITER,
    MAPPED_BY,
    POOL,
    PRINCIPAL,
    REQUEST_ID,
    SESSION_AUTH,
    SETTINGS,
)  # fmt: skip
from gateway.batcher import unavailable
from gateway.constants import MAX_REQUEST_ID, REQUEST_ID_HEADER
from gateway.db import is_unavailable
from gateway.errors import (
    ApiError,
    Forbidden,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
)
from gateway.http import refuse_nul_query
from gateway.keys import Principal
from gateway.keys import authenticate as authenticate_key
from gateway.ratelimit import Verdict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = structlog.get_logger("leadgate.http")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]+$")
SCOPE_ATTR = "leadgate_scope"
CLIENT_CLOSED_REQUEST = 499

# aiohttp's own HTTP errors, as the contract names them.
_HTTP_ERRORS: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
}


def requires(scope: str) -> Callable[[Handler], Handler]:
    """Mark a handler as needing an API key with `scope`."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, SCOPE_ATTR, scope)
        return handler

    return mark


def error_response(error: ApiError, request_id: str) -> web.Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.fields:
        body["fields"] = error.fields
    body["request_id"] = request_id
    return web.Response(
        body=jsonio.dumps({"error": body}),
        status=error.status,
        content_type="application/json",
        headers=error.headers,
    )


def _naming_mapping(request: web.Request, error: ApiError) -> ApiError:
    """A 400 of a postback that went through a sender mapping says which one made its fields."""
    mapping = request.get(MAPPED_BY)
    if mapping is not None and isinstance(error, InvalidRequest) and "mapping" not in error.message:
        error.message = f"{error.message} (the fields as mapping {mapping!r} made them)"
    return error


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= MAX_REQUEST_ID and _SANE_ID.match(given):
        return given
    return uuid.uuid4().hex


def _as_api_error(exc: web.HTTPException) -> ApiError:
    kind = _HTTP_ERRORS.get(exc.status)
    if kind is NotFound:
        return NotFound("no such route")
    if kind is MethodNotAllowed:
        assert isinstance(exc, web.HTTPMethodNotAllowed)
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(f"method not allowed; use {allowed}", headers={"Allow": allowed})
    if kind is PayloadTooLarge:
        return PayloadTooLarge("request body is too large (LEADGATE_MAX_BODY_BYTES)")
    if kind is not None:
        return kind(exc.reason)
    error = InternalError(exc.reason)
    error.status = exc.status
    return error


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        if "\x00" in request.path:
            raise NotFound("no such object")
        refuse_nul_query(request.query)
        response = await handler(request)
    except ApiError as e:
        response = error_response(_naming_mapping(request, e), request_id)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = error_response(_as_api_error(e), request_id)
    except ConnectionResetError:
        # The client hung up before its request was read: nobody is left to read an answer.
        # 499 (as nginx logs it) keeps the request line honest; nothing was changed.
        response = web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception as e:
        if is_unavailable(e):
            # Postgres is out of reach (a key lookup, a read): the client should retry soon.
            log.warning("postgres_unavailable", error=type(e).__name__)
            response = error_response(unavailable(), request_id)
        else:
            log.exception("unhandled_error", method=request.method, path=request.path)
            response = error_response(InternalError("an internal error occurred"), request_id)
    response.headers[REQUEST_ID_HEADER] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    elapsed = time.perf_counter() - started
    metrics.HTTP_REQUESTS.labels(request.method, route, response.status).inc()
    metrics.HTTP_LATENCY.labels(request.method, route).observe(elapsed)
    log.info(
        "request",
        method=request.method,
        route=route,
        status=response.status,
        latency_ms=round(elapsed * 1000, 2),
    )
    return response


def _key_of(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise Unauthorized("the Authorization header must be `Bearer <key>`")
    if key := request.headers.get("X-API-Key"):
        return key.strip()
    # Ad networks' pixels and many providers' webhook settings cannot set headers: a GET
    # postback and an inbound event may carry the key in the query string, nothing else may.
    if (request.method == "GET" and request.path == "/v1/postback") or (
        request.method == "POST" and request.path.startswith("/v1/inbound/")
    ):
        return request.query.get("api_key")
    return None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    scope = getattr(handler, SCOPE_ATTR, None)
    if scope is None:
        return await handler(request)
    key = _key_of(request)
    principal = None
    if not key and (signed_in := request.app.get(SESSION_AUTH)) is not None:
        principal = await signed_in(request)  # a dashboard session: same origin, CSRF-checked
    if principal is None:
        if not key:
            raise Unauthorized("an API key is required: send `Authorization: Bearer <key>`")
        principal = await authenticate_key(request.app[POOL], key, request.app[KEYS])
    if principal is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    structlog.contextvars.bind_contextvars(tenant_id=principal.tenant_id, key_id=principal.key_id)
    if scope not in principal.scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")
    request[PRINCIPAL] = principal
    verdict = await _rate_limit(request, principal, scope)
    if verdict is None:
        return await handler(request)
    try:
        response = await handler(request)
    except ApiError as e:
        e.headers.update(verdict.headers())
        raise
    response.headers.update(verdict.headers())
    return response


async def _rate_limit(request: web.Request, principal: Principal, scope: str) -> Verdict | None:
    """429 past the key's limit; None when limits are off or Redis is out of reach."""
    default = request.app[SETTINGS].rate_limit
    if default == 0:
        return None
    limit = principal.limit_for(scope, default)
    verdict = await request.app[LIMITER].check(principal.key_id, scope, limit)
    if verdict is None:
        metrics.RATE_LIMIT_UNAVAILABLE.inc()
        log.warning("rate_limit_unavailable", scope=scope)
        return None
    if not verdict.allowed:
        metrics.RATE_LIMITED.labels(scope).inc()
        wait = max(1, math.ceil(verdict.retry_after))
        raise RateLimited(
            f"rate limit of {limit} requests per minute for this key exceeded; retry in {wait}s",
            headers={**verdict.headers(), "Retry-After": str(wait)},
        )
    return verdict
