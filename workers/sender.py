"""One HTTP attempt: POST the signed body, time it, and classify what came back.

The worker's one pooled session keeps webhooks off private networks (gateway/ssrf.py) on
every connection. With LEADGATE_EGRESS_PROXY every request goes through that forward proxy,
which resolves the destination itself: the connection to the proxy is the operator's and is
not checked, and the destination is checked before each request instead, refused if any of
its addresses is refused (the proxy could pick any of them).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from gateway.ssrf import (
    DestinationRefused,
    GuardedResolver,
    RefusedAtConnect,
    check_resolved,
    refuse_literal,
)

# What of a response is kept on the attempt: its first kilobyte, as the contract says.
RESPONSE_KEPT_BYTES = 1024
USER_AGENT = "Leadgate-Webhooks/1"


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: datetime
    status: int | None
    latency_ms: float
    error: str | None
    response_body: str | None
    retry_after: float | None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def session(
    concurrency: int,
    *,
    allow_private: bool,
    proxy: str | None = None,
    resolver: AbstractResolver | None = None,
    trace_configs: list[aiohttp.TraceConfig] | None = None,
) -> aiohttp.ClientSession:
    """One pooled session per worker, with the SSRF guard on every resolution, or (through
    `proxy`) on every destination. `resolver` answers DNS; the system's by default.
    `trace_configs` are added to the session's (tracing: a span and `traceparent` per POST)."""
    traced = list(trace_configs or [])
    if proxy is None:
        guarded = resolver if allow_private else GuardedResolver(resolver)
        connector = aiohttp.TCPConnector(
            limit=concurrency, limit_per_host=0, resolver=guarded, ttl_dns_cache=10
        )
        return aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            auto_decompress=False,
            trace_configs=traced or None,
        )
    connector = aiohttp.TCPConnector(
        limit=concurrency, limit_per_host=0, resolver=resolver, ttl_dns_cache=10
    )
    checks = [] if allow_private else [_destination_check(resolver or DefaultResolver())]
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,
        proxy=proxy,
        trace_configs=checks + traced,
    )


def _destination_check(resolver: AbstractResolver) -> aiohttp.TraceConfig:
    """Through a proxy aiohttp resolves only the proxy's name, so the destination is checked
    here, as each request starts (aiohttp's request-start hook; what it raises ends the
    request, and `post` records it)."""

    async def on_start(
        _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        host, port = params.url.host or "", params.url.port or 0
        await check_resolved(resolver, host, port)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, given as seconds or as an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


async def post(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    *,
    timeout: float,  # noqa: ASYNC109 - the per-attempt limit is the receiver's, not the caller's
    allow_private: bool,
) -> Attempt:
    """One attempt. Never raises for what the network or the receiver does; the Attempt says."""
    started_at = datetime.now(UTC)
    began = time.perf_counter()

    def done(
        status: int | None, error: str | None, text: str | None = None, retry: float | None = None
    ) -> Attempt:
        latency = round((time.perf_counter() - began) * 1000, 2)
        return Attempt(started_at, status, latency, error, text, retry)

    try:
        refuse_literal(urlsplit(url).hostname or "", allow_private=allow_private)
        async with asyncio.timeout(timeout):
            async with http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                kept = await resp.content.read(RESPONSE_KEPT_BYTES)
                text = kept.decode("utf-8", errors="replace")
                retry = parse_retry_after(resp.headers.get("Retry-After"))
                error = None if 200 <= resp.status < 300 else f"http_{resp.status}"
                return done(resp.status, error, text, retry)
    except TimeoutError:
        return done(None, "timeout")
    except DestinationRefused:
        return done(None, "refused_destination")
    except aiohttp.ClientConnectorError as e:
        refused = isinstance(e.os_error, RefusedAtConnect)
        return done(None, "refused_destination" if refused else "connection_error")
    except aiohttp.ClientError as e:
        return done(None, type(e).__name__)
    except OSError:
        return done(None, "connection_error")  # a destination the proxied check cannot resolve
