"""Every gateway process hears at once when a key or a tenant changes: Postgres LISTEN/NOTIFY.

schema.sql's triggers announce each change to `api_keys` and `tenants` on the `leadgate_auth`
channel when its transaction commits. Each gateway process holds one connection of its own
listening there; any announcement empties its key cache, so a revocation, or a tenant's new
pipeline, rate limit or phone matching, holds from the next request on.

Failing safe: the cache is trusted only while the channel is proven to work. The connection
proves it every AUTH_LISTENER_HEARTBEAT seconds with a NOTIFY of its own that must come back
within AUTH_LISTENER_TIMEOUT; a closed connection, a failed or late heartbeat, or a Postgres
restart stops the trust at once (the cache is then bypassed, never extended), and the listener
reconnects by itself, with backoff. Back on the channel, it starts trusting an empty cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import structlog
from aiohttp import web

from gateway.appkeys import KEYS, SETTINGS
from gateway.constants import (
    AUTH_CHANNEL,
    AUTH_LISTENER_HEARTBEAT,
    AUTH_LISTENER_RETRY_MAX,
    AUTH_LISTENER_RETRY_MIN,
    AUTH_LISTENER_TIMEOUT,
)
from gateway.keys import KeyCache
from gateway.tracing import untraced

log = structlog.get_logger("leadgate.keys")

# How the listening connection shows in pg_stat_activity.
APPLICATION_NAME = "leadgate-key-listener"
PING_PREFIX = "ping:"

SEND_PING = "SELECT pg_notify($1, $2)"


class ChannelLost(ConnectionError):
    """The listening connection closed, or did not hear its own heartbeat in time."""


class Listener:
    """One listening connection for one key cache, kept up until cancelled."""

    def __init__(self, dsn: str, cache: KeyCache) -> None:
        self.dsn = dsn
        self.cache = cache
        self._pings: dict[str, asyncio.Future[None]] = {}
        self._closed = asyncio.Event()
        self._heard = False

    async def run(self) -> None:
        """Listen, reconnecting after every loss (sooner after a good connection), until
        cancelled."""
        delay = AUTH_LISTENER_RETRY_MIN
        while True:
            self._heard = False
            try:
                await self._listen()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                if self._heard:
                    delay = AUTH_LISTENER_RETRY_MIN
                log.warning("key_listener_lost", error=type(e).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, AUTH_LISTENER_RETRY_MAX)

    async def _listen(self) -> None:
        self._closed.clear()
        conn = await asyncpg.connect(
            self.dsn,
            timeout=AUTH_LISTENER_TIMEOUT,
            server_settings={"application_name": APPLICATION_NAME},
        )
        try:
            conn.add_termination_listener(self._lost)
            await conn.add_listener(AUTH_CHANNEL, self._notified)
            await self._ping(conn)
            # Whatever changed while nobody listened is unknown: start trusting an empty cache.
            self.cache.trust(True)
            self._heard = True
            log.info("key_listener_connected")
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), AUTH_LISTENER_HEARTBEAT)
                if self._closed.is_set():
                    raise ChannelLost("the listening connection closed")
                await self._ping(conn)
        finally:
            self.cache.trust(False)
            for waiting in self._pings.values():
                waiting.cancel()
            self._pings.clear()
            conn.terminate()

    async def _ping(self, conn: asyncpg.Connection) -> None:
        """Send a NOTIFY and wait for it to come back: the channel works end to end."""
        nonce = uuid.uuid4().hex
        heard = asyncio.get_running_loop().create_future()
        self._pings[nonce] = heard
        try:
            async with asyncio.timeout(AUTH_LISTENER_TIMEOUT):
                await conn.execute(SEND_PING, AUTH_CHANNEL, PING_PREFIX + nonce)
                await heard
        except asyncio.CancelledError:
            if self._closed.is_set():
                raise ChannelLost("the listening connection closed") from None
            raise
        finally:
            self._pings.pop(nonce, None)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if isinstance(payload, str) and payload.startswith(PING_PREFIX):
            heard = self._pings.get(payload[len(PING_PREFIX) :])
            if heard is not None and not heard.done():
                heard.set_result(None)
            return  # another process's heartbeat, or a late one of ours: nothing changed
        self.cache.invalidate()

    def _lost(self, _conn: object) -> None:
        # Stop trusting now, not at the next heartbeat.
        self.cache.trust(False)
        self._closed.set()
        for waiting in self._pings.values():
            waiting.cancel()


async def key_listener(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the gateway's listening connection, while its key cache is on."""
    settings = app[SETTINGS]
    if settings.auth_cache_seconds <= 0:
        yield
        return
    # LISTEN needs a session of its own: through PgBouncer in transaction mode it would hear
    # nothing, so LEADGATE_LISTEN_DATABASE_URL may name a direct connection.
    dsn = settings.listen_database_url or settings.database_url
    assert dsn
    with untraced():  # its heartbeats belong to no request's trace
        task = asyncio.create_task(Listener(dsn, app[KEYS]).run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
