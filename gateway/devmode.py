"""`leadgate dev`: everything needed to try Leadgate on a fresh machine, in one process.

Starts an embedded Postgres and Redis under the data folder (only for what is not configured),
migrates, makes a demo tenant and a fresh key, prints a curl to try, and runs the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from rich.console import Console

from gateway import db, embedded
from gateway.keys import create_key
from gateway.server import serve
from gateway.settings import Settings
from gateway.tenants import FIND_TENANT_BY_NAME, create_tenant

DEMO_TENANT = "demo"
console = Console(stderr=True)


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[Settings]:
    """Embedded servers for whatever URL is unset; announces the URLs in the data folder."""
    data_dir = settings.data_dir.resolve()
    stoppers: list[Any] = []
    updates: dict[str, Any] = {}
    try:
        if not settings.database_url:
            with console.status("starting embedded Postgres…"):
                url, pg = embedded.start_postgres(data_dir / "postgres")
            stoppers.append(pg.cleanup)
            updates["database_url"] = url
        if not settings.redis_url:
            url, proc = embedded.start_redis(data_dir / "redis")
            stoppers.append(proc.terminate)
            updates["redis_url"] = url
        settings = settings.model_copy(update=updates)
        announced = data_dir / "urls.json"
        announced.parent.mkdir(parents=True, exist_ok=True)
        announced.write_bytes(
            orjson.dumps({"database_url": settings.database_url, "redis_url": settings.redis_url})
        )
        yield settings
    finally:
        (data_dir / "urls.json").unlink(missing_ok=True)
        for stop in reversed(stoppers):
            stop()


async def _prepare(database_url: str) -> tuple[str, str]:
    await db.migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        tenant = await conn.fetchrow(FIND_TENANT_BY_NAME, DEMO_TENANT)
        if tenant is None:
            tenant = await create_tenant(conn, DEMO_TENANT)
        _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
        return tenant["id"], key
    finally:
        await conn.close()


def banner(settings: Settings, tenant_id: str, key: str) -> str:
    base = f"http://{settings.host}:{settings.port}"
    body = '{"email":"ada@example.com","first_name":"Ada","source":"landing-page"}'
    curl = (
        f"curl -s {base}/v1/postback -H {shlex.quote('Authorization: Bearer ' + key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    return (
        f"\n[bold green]Leadgate is running[/bold green] on {base}\n\n"
        f"demo tenant  {tenant_id}\n"
        f"API key      [bold]{key}[/bold]   (shown once; a new one each start)\n\n"
        f"post a lead:\n  {curl}\n\n"
        f"list leads:\n  curl -s {base}/v1/leads -H 'Authorization: Bearer {key}'\n\n"
        f"API description: {base}/v1/openapi.json\n"
    )


def run_dev(settings: Settings, *, fresh: bool = False) -> None:
    if fresh:
        embedded.remove(Path(settings.data_dir))
    with _servers(settings) as running:
        assert running.database_url
        tenant_id, key = asyncio.run(_prepare(running.database_url))
        console.print(banner(running, tenant_id, key), soft_wrap=True, highlight=False)
        serve(running)
