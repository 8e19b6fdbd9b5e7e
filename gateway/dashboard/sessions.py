"""Dashboard sessions: signing in with an API key, the session cookie, and CSRF.

A person signs in with an API key (the `read` scope at least) through a form; the key is checked
as any request's is, and a session is made for it: a random 256-bit token in a cookie
(HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS) and only the token's SHA-256 in Postgres.
A forged or altered cookie names no session, so the cookie needs no signing secret shared by
every process. The key itself is never stored, sent back, or written into a page.

Every request looks the session up together with its key, so signing out, the session's
expiry or the key's revocation ends it at once, in every process. A session acts as its key on
the JSON API (`session_principal`, which the auth middleware asks when a request carries no
key), with the same scopes and rules, but only for same-origin requests; and every request
that is not GET or HEAD must carry the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from aiohttp import web

from gateway.appkeys import POOL, SETTINGS
from gateway.constants import CSRF_HEADER, SESSION_COOKIE, SESSION_TOKEN_BYTES
from gateway.dashboard import sql
from gateway.errors import Forbidden, Unauthorized
from gateway.keys import Principal, principal_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A live session: who it acts as, and the CSRF token its pages send back."""

    principal: Principal
    csrf_token: str
    digest: bytes


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def start_session(pool: asyncpg.Pool, principal: Principal, seconds: float) -> NewSession:
    """Make a session for the key that signed in; expired sessions are pruned on the way."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    csrf = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql.PRUNE_SESSIONS)
        expires = await conn.fetchval(
            sql.CREATE_SESSION,
            digest_of(token),
            principal.tenant_id,
            principal.key_id,
            csrf,
            seconds,
        )
    return NewSession(token, expires)


async def end_session(pool: asyncpg.Pool, signed_in: SignedIn) -> None:
    await pool.execute(sql.END_SESSION, signed_in.digest)


async def find_session(request: web.Request) -> SignedIn | None:
    """The request's live session, or None (no cookie, expired, signed out, key revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 2 * SESSION_TOKEN_BYTES or "\x00" in token:
        return None
    digest = digest_of(token)
    row = await request.app[POOL].fetchrow(sql.SESSION_PRINCIPAL, digest)
    if row is None or not hmac.compare_digest(row["token_hash"], digest):
        return None
    return SignedIn(principal_of(row), row["csrf_token"], digest)


def same_origin(request: web.Request) -> bool:
    """Whether the browser says the request comes from a page of this origin.

    Browsers send `Sec-Fetch-Site`; older ones send `Origin` on every POST. A request with
    neither comes from something that is not a browser, which no cross-site page can steer.
    "none" is a person typing the URL or opening a bookmark: not steered by a page either.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    # Compared by host alone: behind a TLS proxy the request reaches Leadgate as plain HTTP.
    return origin.partition("://")[2] == request.host


def check_csrf(request: web.Request, signed_in: SignedIn, sent: str | None) -> None:
    if request.method in SAFE_METHODS:
        return
    if not sent or not hmac.compare_digest(sent.encode(), signed_in.csrf_token.encode()):
        raise Forbidden(f"a dashboard change needs the session's {CSRF_HEADER} header")


async def session_principal(request: web.Request) -> Principal | None:
    """For the auth middleware: the principal of the request's dashboard session, if any.

    No session cookie: None (the middleware then asks for a key). A cookie that names no live
    session is 401; a request from another site, or a change without the CSRF token, is 403.
    """
    if SESSION_COOKIE not in request.cookies:
        return None
    if not same_origin(request):
        raise Forbidden("a dashboard session is accepted only from the dashboard's own pages")
    signed_in = await find_session(request)
    if signed_in is None:
        raise Unauthorized("the dashboard session has ended (expired, signed out or key revoked)")
    check_csrf(request, signed_in, request.headers.get(CSRF_HEADER))
    return signed_in.principal


def set_cookie(response: web.StreamResponse, request: web.Request, new: NewSession) -> None:
    settings = request.app[SETTINGS]
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=int(settings.dashboard_session_seconds),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or settings.dashboard_secure_cookie,
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
