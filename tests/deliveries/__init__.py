"""Delivery tests' shared helper: a real worker that stops only once it is at rest.

`worker_running(settings)` runs the real arq worker for a block and stops it as SIGTERM would
(`workers.main.running_in_loop`); a worker that died of an error fails the test. The `worker`
fixture wraps it for a whole test.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.settings import Settings
from workers.main import running_in_loop


@contextlib.asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[None]:
    async with running_in_loop(settings) as task:
        yield
    if not task.cancelled() and task.exception() is not None:
        raise AssertionError("the worker died") from task.exception()


@pytest.fixture
async def worker(settings: Settings, conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A real worker for the whole test, started on the emptied database."""
    async with worker_running(settings):
        yield
