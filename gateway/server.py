"""Running the gateway process: logging, the event loop, and graceful shutdown."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.settings import Settings

# On SIGTERM aiohttp stops accepting, then gives in-flight requests this long to finish.
SHUTDOWN_TIMEOUT = 30.0
# A GET postback carries a whole lead in its query string: up to ~30 fields of up to 1000
# characters, percent-encoded. aiohttp's default (8190 bytes) would refuse one before Leadgate
# could answer with its own error body.
MAX_REQUEST_LINE = 128 * 1024
MAX_HEADER_FIELD = 16 * 1024


def install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def serve(settings: Settings, app: web.Application | None = None) -> None:
    configure_logging(settings.log_format, settings.log_level)
    install_uvloop()
    log = structlog.get_logger("leadgate")
    log.info("gateway_starting", host=settings.host, port=settings.port)
    web.run_app(
        app if app is not None else create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # Passed through the runner to each connection's request handler.
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=MAX_HEADER_FIELD,
    )
