"""Processes run beside a test: `leadgate serve`, `leadgate worker`, and the lead systems' Node
webhook verifiers.

Each is a real child process, started with its own environment and stopped by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson

from tests.conftest import TEST_SECRET_KEYS

HERE = Path(__file__).parent
LEADGATE = Path(sys.executable).parent / "leadgate"

# A worker as fast as the in-process ones: short retries and timeouts, and a short longest
# wait between looks in Postgres.
FAST_WORKER_ENV = {
    "LEADGATE_RETRY_SCHEDULE": "0,0.2,0.2",
    "LEADGATE_DELIVERY_TIMEOUT": "1",
    "LEADGATE_RELAY_INTERVAL": "0.2",
    "LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true",
    "LEADGATE_LOG_FORMAT": "json",
    "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
}


async def _exited(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the process to exit; TimeoutError if it does not within `timeout`."""
    async with asyncio.timeout(timeout):
        while (code := process.poll()) is None:
            await asyncio.sleep(0.05)
    return code


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill the process if it still runs, and reap it."""
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _spawn(command: str, settings: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`leadgate COMMAND` with `settings` as its only LEADGATE_ variables, logging to `log`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LEADGATE_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(LEADGATE), command],
            env={**environment, **settings},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@dataclass
class WorkerProcess:
    """`leadgate worker` in a child process; its log lines go to a file."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, database_url: str, redis_url: str, log: Path, **env: str) -> WorkerProcess:
        settings = {
            **FAST_WORKER_ENV,
            "LEADGATE_DATABASE_URL": database_url,
            "LEADGATE_REDIS_URL": redis_url,
            **env,
        }
        return cls(_spawn("worker", settings, log), log)

    async def started(self, timeout: float = 10.0) -> None:
        """Wait until the worker logged that it runs (its startup hook is done)."""
        async with asyncio.timeout(timeout):
            while b'"worker_started"' not in self.log.read_bytes():
                assert self.process.poll() is None, self.log.read_text()
                await asyncio.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    async def exited(self, timeout: float) -> int:
        return await _exited(self.process, timeout)

    def stop(self) -> None:
        _end(self.process)


@dataclass
class GatewayProcess:
    """`leadgate serve` in a child process on a free port; its log lines go to a file."""

    process: subprocess.Popen[bytes]
    log: Path
    base: str

    @classmethod
    def start(cls, database_url: str, redis_url: str, log: Path, **env: str) -> GatewayProcess:
        from gateway.embedded import free_port

        port = free_port()
        settings = {
            "LEADGATE_DATABASE_URL": database_url,
            "LEADGATE_REDIS_URL": redis_url,
            "LEADGATE_PORT": str(port),
            "LEADGATE_LOG_FORMAT": "json",
            "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS,
            "LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true",
            "LEADGATE_RATE_LIMIT": "0",
            **env,
        }
        return cls(_spawn("serve", settings, log), log, f"http://127.0.0.1:{port}")

    async def started(self, timeout: float = 20.0) -> None:
        """Wait until /healthz answers."""
        import aiohttp

        async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
            while True:
                try:
                    async with http.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.process.poll() is None, self.log.read_text()
                await asyncio.sleep(0.05)

    def signal(self, signum: signal.Signals) -> None:
        os.kill(self.process.pid, signum)

    async def exited(self, timeout: float) -> int:
        return await _exited(self.process, timeout)

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as a deployment stops it; killed if it has not exited in `timeout`."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await self.exited(timeout)
        _end(self.process)


@dataclass
class NodeVerifier:
    """The seeds' Node verifier as a real receiver (`node_verifier.mjs`)."""

    process: subprocess.Popen[bytes]
    url: str

    @classmethod
    async def start(cls, scheme: str, secret: str, timeout: float = 10.0) -> NodeVerifier:
        """`scheme` is a seed's (shortstack, leaditio), or ed25519 with a `whpk_…` key."""
        script = "ed25519_verifier.mjs" if scheme == "ed25519" else "node_verifier.mjs"
        args = [secret] if scheme == "ed25519" else [scheme, secret]
        process = subprocess.Popen(
            ["node", str(HERE / script), *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await asyncio.to_thread(process.stdout.readline)
        except BaseException:
            _end(process)
            process.stdout.close()
            raise
        port = orjson.loads(line)["port"]
        return cls(process, f"http://127.0.0.1:{port}/webhooks")

    def stop(self) -> None:
        _end(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()
