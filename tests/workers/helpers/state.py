"""A real worker whose attempts go out on a given HTTP session, so a test controls what its
destinations resolve to."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp

from gateway.settings import Settings
from workers.main import running_in_loop


@contextlib.asynccontextmanager
async def worker_with(settings: Settings, http: aiohttp.ClientSession) -> AsyncIterator[None]:
    """Run the real worker (claim, send, record) on `http` for a block."""
    async with running_in_loop(settings, http=http) as task:
        yield
    if not task.cancelled() and task.exception() is not None:
        raise AssertionError("the worker died") from task.exception()
