"""The ceiling: the least an aiohttp server can do for a postback.

It reads the body, parses it with orjson and answers 202 with a tiny JSON document: no
authentication, no database, no logging. Whatever Leadgate does on top of this costs
requests per second relative to this figure. It runs on uvloop when uvloop is installed,
as Leadgate does.

Usage: python bench/peers/bare_aiohttp.py --host 127.0.0.1 --port 18080
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

ACCEPTED = orjson.dumps({"accepted": True})


async def postback(request: web.Request) -> web.Response:
    """Parse the JSON body and acknowledge it."""
    body = await request.read()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return web.Response(
            status=400, body=b'{"error":"invalid json"}', content_type="application/json"
        )
    if not isinstance(payload, dict):
        return web.Response(
            status=422, body=b'{"error":"object expected"}', content_type="application/json"
        )
    return web.Response(status=202, body=ACCEPTED, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    """Answer 200 once the server is listening."""
    return web.Response(status=200, body=b'{"ok":true}', content_type="application/json")


def build_app() -> web.Application:
    """The two routes the benchmark uses."""
    app = web.Application()
    app.router.add_post("/v1/postback", postback)
    app.router.add_get("/healthz", healthz)
    return app


def event_loop_name() -> str:
    """Install uvloop's policy when available and name the loop in use."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    loop = event_loop_name()
    print(f"bare-aiohttp on http://{args.host}:{args.port} ({loop})", flush=True)
    web.run_app(build_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
