"""A webhook receiver for the delivery benchmarks: answers 200, counts, and can time arrivals.

`POST /hook` answers 200 at once, or after `--delay` seconds (a slow receiver). It counts every
request and the distinct `webhook-id`s among them (so a duplicate delivery shows), and the
time.time() of the first and last arrival. With `--record` it also parses each body and keeps
the arrival time of every lead id (the Standard Webhooks envelope's `data.id`), for the
end-to-end latency benchmark. It verifies no signature: the benchmark measures the sender.

Routes: `POST /hook`, `GET /count` (`{count, unique, first, last}`), `GET /arrivals`
(`{lead_id: time}`), `POST /reset`, `GET /healthz`.

Usage: python bench/receiver.py --port 18090 [--delay 0.1] [--record]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

OK = b'{"ok":true}'


@dataclass
class Tally:
    """What the receiver has seen since its last reset."""

    count: int = 0
    ids: set[str] = field(default_factory=set)
    first: float | None = None
    last: float | None = None
    arrivals: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, object]:
        return {
            "count": self.count,
            "unique": len(self.ids),
            "first": self.first,
            "last": self.last,
        }

    def reset(self) -> None:
        """Forget everything, for the next scenario."""
        self.count, self.first, self.last = 0, None, None
        self.ids.clear()
        self.arrivals.clear()


TALLY = web.AppKey("tally", Tally)
DELAY = web.AppKey("delay", float)
RECORD = web.AppKey("record", bool)


async def hook(request: web.Request) -> web.Response:
    """Take one webhook: read it, note it, answer 200 (after the configured delay)."""
    body = await request.read()
    now = time.time()
    tally = request.app[TALLY]
    tally.count += 1
    tally.ids.add(request.headers.get("webhook-id", ""))
    if tally.first is None:
        tally.first = now
    tally.last = now
    if request.app[RECORD]:
        lead_id = orjson.loads(body).get("data", {}).get("id")
        if isinstance(lead_id, str):
            tally.arrivals.setdefault(lead_id, now)
    if request.app[DELAY] > 0:
        await asyncio.sleep(request.app[DELAY])
    return web.Response(body=OK, content_type="application/json")


async def count(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps(request.app[TALLY].summary()), content_type="application/json"
    )


async def arrivals(request: web.Request) -> web.Response:
    return web.Response(
        body=orjson.dumps(request.app[TALLY].arrivals), content_type="application/json"
    )


async def reset(request: web.Request) -> web.Response:
    request.app[TALLY].reset()
    return web.Response(body=OK, content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(body=OK, content_type="application/json")


def build_app(delay: float, record: bool) -> web.Application:
    app = web.Application()
    app[TALLY] = Tally()
    app[DELAY] = delay
    app[RECORD] = record
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    app.router.add_get("/arrivals", arrivals)
    app.router.add_post("/reset", reset)
    app.router.add_get("/healthz", healthz)
    return app


def install_uvloop() -> str:
    """Run on uvloop when it is installed, as Leadgate does; name the loop in use."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18090)
    parser.add_argument("--delay", type=float, default=0.0, help="Seconds before answering.")
    parser.add_argument("--record", action="store_true", help="Keep each lead id's arrival.")
    args = parser.parse_args()
    loop = install_uvloop()
    print(f"receiver on http://{args.host}:{args.port} delay={args.delay} ({loop})", flush=True)
    app = build_app(args.delay, args.record)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
