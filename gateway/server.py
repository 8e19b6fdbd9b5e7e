"""Running the gateway process: logging, the event loop, and graceful shutdown."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal

import structlog
from aiohttp import web

from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.settings import Settings
from gateway.tracing import GATEWAY_SERVICE, from_environment

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
    """Serve the gateway; with LEADGATE_PROCESSES > 1, as that many processes on one port."""
    if settings.processes > 1 and app is None:
        _serve_processes(settings)
    else:
        _serve_one(settings, app)


def _serve_processes(settings: Settings) -> None:
    """Each process runs its own app on the shared port (SO_REUSEPORT; the kernel spreads
    connections); this parent passes SIGTERM/SIGINT on and waits for them all to finish."""
    spawn = multiprocessing.get_context("spawn")
    children = [
        spawn.Process(target=_serve_one, args=(settings, None, True), name=f"leadgate-{i}")
        for i in range(settings.processes)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()


def _serve_one(
    settings: Settings, app: web.Application | None = None, reuse_port: bool = False
) -> None:
    configure_logging(settings.log_format, settings.log_level)
    install_uvloop()
    log = structlog.get_logger("leadgate")
    log.info("gateway_starting", host=settings.host, port=settings.port, pid=os.getpid())
    web.run_app(
        app if app is not None else create_app(settings, from_environment(GATEWAY_SERVICE)),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # Passed through the runner to each connection's request handler.
        max_line_size=MAX_REQUEST_LINE,
        max_field_size=MAX_HEADER_FIELD,
        reuse_port=reuse_port,
    )
