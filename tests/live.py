"""A real `leadgate serve` process on a free port, for tests that need an HTTP server to talk to
(schemathesis, generated clients)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests

from gateway.embedded import free_port
from tests.conftest import TEST_SECRET_KEYS, Servers

STARTUP = 20.0


@contextmanager
def live_gateway(servers: Servers, **env: str) -> Iterator[str]:
    """Start `leadgate serve` on the test servers; yield its base URL once /healthz answers."""
    port = free_port()
    leadgate = os.path.join(os.path.dirname(sys.executable), "leadgate")
    settings = {"LEADGATE_DATABASE_URL": servers.database_url,
                "LEADGATE_REDIS_URL": servers.redis_url, "LEADGATE_PORT": str(port),
                "LEADGATE_LOG_FORMAT": "json", "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
                **env}  # fmt: skip
    proc = subprocess.Popen(
        [leadgate, "serve"],
        env={**os.environ, **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
