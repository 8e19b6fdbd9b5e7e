"""The worker's /metrics on LEADGATE_WORKER_METRICS_PORT, behind LEADGATE_METRICS_TOKEN if set.

A small aiohttp server in the worker's own event loop (prometheus_client's built-in server
cannot ask for a token), answering the refusal with the contract's error body.
"""

from __future__ import annotations

import uuid

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import jsonio
from gateway.metrics import CHALLENGE, REFUSED, allowed
from gateway.settings import Settings


def metrics_app(settings: Settings) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        if not allowed(request.headers.get("Authorization"), settings.metrics_token):
            error = {"code": "unauthorized", "message": REFUSED, "request_id": uuid.uuid4().hex}
            return web.Response(
                status=401,
                body=jsonio.dumps({"error": error}),
                content_type="application/json",
                headers=CHALLENGE,
            )
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def start(settings: Settings) -> web.AppRunner | None:
    """Serve the worker's metrics, if LEADGATE_WORKER_METRICS_PORT is set; stop with `stop`."""
    if not settings.worker_metrics_port:
        return None
    runner = web.AppRunner(metrics_app(settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.worker_metrics_port).start()
    return runner


async def stop(runner: web.AppRunner | None) -> None:
    if runner is not None:
        await runner.cleanup()
