"""An OTLP/HTTP trace collector that keeps nothing: it decodes each export and counts its spans.

For `bench/tracing.py`: Leadgate's processes export to it as they would to a real collector
(protobuf over HTTP, from the SDK's batch span processor), and the benchmark reads how many
spans arrived. `POST /v1/traces`, `GET /count` (`{"requests": n, "spans": n}`), `GET /healthz`.

Usage: python bench/peers/otlp_sink.py --port 4318
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

COUNTS = web.AppKey("counts", dict)
ANSWER = ExportTraceServiceResponse().SerializeToString()


async def traces(request: web.Request) -> web.Response:
    export = ExportTraceServiceRequest.FromString(await request.read())
    counts = request.app[COUNTS]
    counts["requests"] += 1
    counts["spans"] += sum(
        len(scope.spans) for rs in export.resource_spans for scope in rs.scope_spans
    )
    return web.Response(body=ANSWER, content_type="application/x-protobuf")


async def count(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[COUNTS]), content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 2**20)
    app[COUNTS] = {"requests": 0, "spans": 0}
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/count", count)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
