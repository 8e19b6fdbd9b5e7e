"""The demo receiver `leadgate dev` starts: it verifies each webhook's signature and logs it.

It plays the CRM in the tour, so a fresh install shows the whole path — postback, outbox,
worker, signed webhook — without anything else running.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable

import orjson
import structlog
from aiohttp import web

from gateway.signing import sign_headers

DEMO_PATH = "/webhooks"

log = structlog.get_logger("leadgate.demo_receiver")


def verified(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, as a receiver would do it."""
    try:
        msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    expected = sign_headers({"scheme": "standard"}, [secret], msg_id, timestamp, body)
    wanted = expected["webhook-signature"]
    return any(
        hmac.compare_digest(wanted, sig) for sig in headers.get("webhook-signature", "").split()
    )


def receiver_app(secret: str) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        ok = verified(secret, {k.lower(): v for k, v in request.headers.items()}, body)
        event = orjson.loads(body) if ok else {}
        log.info(
            "demo_receiver_got_webhook",
            signature_valid=ok,
            webhook_id=request.headers.get("webhook-id"),
            type=event.get("type"),
            lead_id=(event.get("data") or {}).get("id"),
        )
        return web.json_response({"received": ok}, status=200 if ok else 401)

    app = web.Application()
    app.router.add_post(DEMO_PATH, receive)
    return app


def receiver_context(
    secret: str, host: str, port: int
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs the demo receiver beside the gateway."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(receiver_app(secret), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        yield
        await runner.cleanup()

    return context
