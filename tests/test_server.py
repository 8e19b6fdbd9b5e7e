"""`leadgate serve` as a process: several processes on one port, and a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import psutil
import requests

from gateway.embedded import free_port
from tests.conftest import Servers


def test_several_processes_share_the_port_and_stop_on_sigterm(servers: Servers, conn: Any) -> None:
    port = free_port()
    env = {**os.environ, "LEADGATE_DATABASE_URL": servers.database_url,
           "LEADGATE_REDIS_URL": servers.redis_url, "LEADGATE_PORT": str(port),
           "LEADGATE_PROCESSES": "2", "LEADGATE_LOG_FORMAT": "json"}  # fmt: skip
    leadgate = os.path.join(os.path.dirname(sys.executable), "leadgate")
    parent = subprocess.Popen(
        [leadgate, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        servers_up: list[psutil.Process] = []
        while time.monotonic() < deadline and len(servers_up) < 2:
            # spawn's resource tracker is a child too; the servers run spawn_main.
            servers_up = [
                p for p in psutil.Process(parent.pid).children()
                if any("spawn_main" in part for part in p.cmdline())
            ]  # fmt: skip
            time.sleep(0.1)
        assert len(servers_up) == 2
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        listening = {
            c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
            and c.status == psutil.CONN_LISTEN
        }  # fmt: skip
        assert listening == {p.pid for p in servers_up}
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(40) == 0
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in servers_up)
    finally:
        if parent.poll() is None:
            parent.kill()
