"""`leadgate dev`: everything needed to try Leadgate on a fresh machine, in one process.

Starts an embedded Postgres and Redis under the data folder (only for what is not configured),
migrates, makes a demo tenant and a fresh key, prints a curl to try, and runs the gateway.
Unless LEADGATE_SECRET_KEYS is set, the key that encrypts secrets at rest is made once and
kept in the data folder (`secret.key`, readable by its owner alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from rich.console import Console

from gateway import db, embedded
from gateway.app import create_app
from gateway.crypto import Cipher, generate_key
from gateway.devreceiver import DEMO_PATH, receiver_context
from gateway.endpoints.models import EndpointIn
from gateway.endpoints.store import add_endpoint
from gateway.keys import create_key
from gateway.server import serve
from gateway.settings import Settings
from gateway.tenants import FIND_TENANT_BY_NAME, create_tenant
from gateway.tracing import GATEWAY_SERVICE, Tracing, from_environment
from workers.main import running_in_loop

# The demo endpoint is found again by tenant and URL, so restarts reuse it and its secret.
FIND_DEMO_ENDPOINT = """
SELECT id, secret FROM endpoints WHERE tenant_id = $1 AND url = $2 ORDER BY created_at LIMIT 1
"""

DEMO_TENANT = "demo"
SECRET_KEY_FILE = "secret.key"
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
        if not settings.secret_keys:
            updates["secret_keys"] = Settings(secret_keys=dev_secret_key(data_dir)).secret_keys
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


def dev_secret_key(data_dir: Path) -> str:
    """The data folder's key for secrets at rest, made on the first start."""
    path = data_dir / SECRET_KEY_FILE
    if not path.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Created readable by its owner alone, before the key is written into it.
        path.touch(mode=0o600)
        path.write_text(generate_key() + "\n")
    return path.read_text().strip()


@dataclass(frozen=True)
class Demo:
    tenant_id: str
    key: str
    endpoint_id: str
    endpoint_url: str
    secret: str


async def _prepare(settings: Settings) -> Demo:
    """Migrate; make (or find) the demo tenant and its demo endpoint; make a fresh key."""
    assert settings.database_url
    await db.migrate(settings.database_url)
    url = f"http://{settings.host}:{settings.port + 1}{DEMO_PATH}"
    cipher = Cipher.from_settings(settings)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await db.init_connection(conn)
        tenant = await conn.fetchrow(FIND_TENANT_BY_NAME, DEMO_TENANT)
        if tenant is None:
            tenant = await create_tenant(conn, DEMO_TENANT)
        _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
        endpoint: Any = await conn.fetchrow(FIND_DEMO_ENDPOINT, tenant["id"], url)
        if endpoint is not None:
            return Demo(
                tenant["id"], key, endpoint["id"], url, cipher.decrypt_text(endpoint["secret"])
            )
        spec = EndpointIn(url=url, description="leadgate dev: the demo receiver")
        added = await add_endpoint(conn, tenant["id"], spec, allow_private=True, cipher=cipher)
        return Demo(tenant["id"], key, added["id"], url, added["secret"])
    finally:
        await conn.close()


def banner(settings: Settings, demo: Demo) -> str:
    tenant_id, key = demo.tenant_id, demo.key
    base = f"http://{settings.host}:{settings.port}"
    body = '{"email":"ada@example.com","first_name":"Ada","source":"landing-page"}'
    curl = (
        f"curl -s {base}/v1/postback -H {shlex.quote('Authorization: Bearer ' + key)} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    return (
        f"\n[bold green]Leadgate is running[/bold green] on {base}\n\n"
        f"demo tenant  {tenant_id}\n"
        f"API key      [bold]{key}[/bold]   (shown once; a new one each start)\n"
        f"dashboard    {base}/dashboard/   (sign in with the key above)\n\n"
        f"post a lead:\n  {curl}\n\n"
        f"list leads:\n  curl -s {base}/v1/leads -H 'Authorization: Bearer {key}'\n\n"
        f"demo webhook endpoint {demo.endpoint_id} → {demo.endpoint_url}\n"
        f"  (a receiver started here: it verifies each signature and logs what it got)\n\n"
        f"watch deliveries live, in another terminal:\n  .venv/bin/leadgate tail\n\n"
        f"API description: {base}/v1/openapi.json\n"
    )


def run_dev(settings: Settings, *, fresh: bool = False) -> None:
    if fresh:
        embedded.remove(Path(settings.data_dir))
    settings = settings.model_copy(update={"allow_private_destinations": True})
    with _servers(settings) as running:
        demo = asyncio.run(_prepare(running))
        console.print(banner(running, demo), soft_wrap=True, highlight=False)
        tracing = from_environment(GATEWAY_SERVICE)
        app = create_app(running, tracing)
        app.cleanup_ctx.append(worker_context(running, tracing))
        app.cleanup_ctx.append(receiver_context(demo.secret, running.host, running.port + 1))
        serve(running, app)


def worker_context(
    settings: Settings, tracing: Tracing | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Run the delivery worker inside the gateway's event loop (dev only)."""

    async def context(_: web.Application) -> AsyncIterator[None]:
        async with running_in_loop(settings, tracing=tracing):
            yield

    return context
