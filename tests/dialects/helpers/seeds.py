"""The seed systems' Node receivers (`seed_receivers.mjs`) as real servers beside a test."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

HERE = Path(__file__).parent


@dataclass
class SeedReceiver:
    process: subprocess.Popen[bytes]
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}/webhooks"

    @classmethod
    async def start(cls, system: str, secret: str, timeout: float = 10.0) -> SeedReceiver:
        process = subprocess.Popen(
            ["node", str(HERE / "seed_receivers.mjs"), system, secret],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await asyncio.to_thread(process.stdout.readline)
        except BaseException:
            cls(process, "").stop()
            raise
        return cls(process, f"http://127.0.0.1:{orjson.loads(line)['port']}")

    async def seen(self) -> list[list[list[Any]]]:
        """What the handler logged, per verified request: its console.log lines."""
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/__seen") as response:
            seen: list[list[list[Any]]] = await response.json()
            return seen

    async def wait_seen(self, count: int, timeout: float = 10.0) -> list[list[list[Any]]]:
        async with asyncio.timeout(timeout):
            while len(seen := await self.seen()) < count:
                await asyncio.sleep(0.05)
        return seen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
