"""The durable floor: the least a gateway on this stack can do and still lose nothing.

aiohttp + asyncpg. Each postback's JSON is parsed, handed to a group committer and answered
201 only after its batch has committed: one `INSERT … SELECT … FROM unnest($1, $2) ON CONFLICT
(email) DO UPDATE` per batch into a single table (email, the raw JSON). No auth, no validation,
no logging, no outbox. A batch starts as soon as the previous one has committed and takes
everything that arrived meanwhile (up to 500). Commits are durable.

Usage: python bench/peers/durable_floor.py --port 18080 --database-url postgresql://…
"""

from __future__ import annotations

import argparse
import asyncio

import asyncpg
import orjson
from aiohttp import web

CREATE = """
CREATE TABLE IF NOT EXISTS floor_leads (email text PRIMARY KEY, body jsonb NOT NULL)
"""
UPSERT = """
INSERT INTO floor_leads (email, body)
SELECT * FROM unnest($1::text[], $2::jsonb[])
ON CONFLICT (email) DO UPDATE SET body = floor_leads.body || EXCLUDED.body
"""
CREATED = orjson.dumps({"created": True})
MAX_BATCH = 500

POOL = web.AppKey("pool", asyncpg.Pool)
COMMITTER = web.AppKey("committer", "Committer")


class Committer:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.pending: list[tuple[str, str, asyncio.Future[None]]] = []
        self.running = False

    async def submit(self, email: str, body: str) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((email, body, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self.run())
        await future

    async def run(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            # One email once per statement (ON CONFLICT cannot touch a row twice).
            rows = {email: body for email, body, _ in batch}
            try:
                await self.pool.execute(UPSERT, list(rows), list(rows.values()))
            except Exception as e:
                for *_, future in batch:
                    future.set_exception(e)
                continue
            for *_, future in batch:
                future.set_result(None)
        self.running = False


async def postback(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        payload = orjson.loads(body)
        email = str(payload["email"]).strip().lower()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return web.Response(status=400, body=b'{"error":"bad lead"}')
    await request.app[COMMITTER].submit(email, body.decode())
    return web.Response(status=201, body=CREATED, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(status=200, body=b'{"ok":true}', content_type="application/json")


def build_app(database_url: str) -> web.Application:
    app = web.Application()

    async def pool(app: web.Application):  # type: ignore[no-untyped-def]
        app[POOL] = await asyncpg.create_pool(database_url, min_size=2, max_size=4)
        await app[POOL].execute(CREATE)
        app[COMMITTER] = Committer(app[POOL])
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/v1/postback", postback)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(build_app(args.database_url), host=args.host, port=args.port,
                access_log=None, print=None)  # fmt: skip


if __name__ == "__main__":
    main()
