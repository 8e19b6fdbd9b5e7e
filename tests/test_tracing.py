"""Traces from real processes, configured only by the standard OTEL_* variables.

`leadgate serve` and `leadgate worker` export OTLP over HTTP to a collector this test runs (an
aiohttp server decoding the protobuf requests). With an endpoint set, one trace holds the
gateway's and the worker's spans, and the webhook's `traceparent` names it; with
OTEL_SDK_DISABLED=true nothing is sent and no webhook carries a trace. Off, OpenTelemetry is
not even imported (tests/workers/test_tracing.py checks the spans themselves in process).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import Servers, Tenant
from tests.receivers import Receiver, start
from tests.workers.helpers.processes import GatewayProcess, WorkerProcess

pytestmark = pytest.mark.slow


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver: every span it was sent, with its service's name."""

    spans: list[tuple[str, Any]] = field(default_factory=list)
    url: str = ""

    async def traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                self.spans += [(attributes["service.name"], s) for s in scope.spans]
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    found = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", found.traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    found.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield found
    await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    runner = await start(got)
    yield got
    await runner.cleanup()


async def _deliver_one(
    servers: Servers, tenant: Tenant, receiver: Receiver, tmp_path: Path, env: dict[str, str]
) -> Any:
    """A gateway and a worker with `env`; one postback, delivered. Returns what arrived."""
    gateway = GatewayProcess.start(
        servers.database_url, servers.redis_url, tmp_path / "gateway.log", **env
    )
    worker = WorkerProcess.start(
        servers.database_url, servers.redis_url, tmp_path / "worker.log", **env
    )
    try:
        await gateway.started()
        await worker.started()
        async with aiohttp.ClientSession(headers=tenant.headers) as http:
            async with http.post(
                f"{gateway.base}/v1/endpoints", json={"url": receiver.url}
            ) as response:
                assert response.status == 201, await response.text()
            async with http.post(
                f"{gateway.base}/v1/postback", json={"email": "otel@example.com"}
            ) as response:
                assert response.status == 201, await response.text()
        (got,) = await receiver.wait_for(1)
        return got
    finally:
        await gateway.stop()
        worker.stop()


async def test_the_processes_export_one_trace_over_otlp(
    servers: Servers, tenant: Tenant, receiver: Receiver, collector: Collector, tmp_path: Path
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    got = await _deliver_one(servers, tenant, receiver, tmp_path, env)
    trace_id = got.headers["traceparent"].split("-")[1]

    async with asyncio.timeout(10):
        while not {"leadgate.attempt", "POST /v1/postback"} <= {s.name for _, s in collector.spans}:
            await asyncio.sleep(0.05)
    of_trace = [(service, s) for service, s in collector.spans if s.trace_id.hex() == trace_id]
    names = {(service, s.name) for service, s in of_trace}
    assert {
        ("leadgate-gateway", "POST /v1/postback"),
        ("leadgate-gateway", "leadgate.commit"),
        ("leadgate-gateway", "leadgate.batch"),
        ("leadgate-worker", "leadgate.attempt"),
        ("leadgate-worker", "POST"),
    } <= names


async def test_with_the_sdk_disabled_nothing_is_sent(
    servers: Servers, tenant: Tenant, receiver: Receiver, collector: Collector, tmp_path: Path
) -> None:
    env = {
        "OTEL_SDK_DISABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    got = await _deliver_one(servers, tenant, receiver, tmp_path, env)
    assert "traceparent" not in {h.lower() for h in got.headers}
    await asyncio.sleep(0.5)  # ten export periods, after a graceful stop (which would flush)
    assert collector.spans == []


def test_tracing_off_imports_no_opentelemetry() -> None:
    """Off costs nothing: the gateway and the worker run without OpenTelemetry loaded."""
    check = (
        "import sys\n"
        "from gateway import tracing\n"
        "from gateway.app import create_app\n"
        "from gateway.crypto import generate_key\n"
        "from gateway.settings import Settings\n"
        "import gateway.server, workers.main\n"
        "assert tracing.from_environment('leadgate-gateway') is None\n"
        "create_app(Settings(database_url='postgresql://x/y', redis_url='redis://x',\n"
        "                    secret_keys=generate_key()))\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "assert not loaded, loaded\n"
    )
    environment = {"PATH": "/usr/bin:/bin", "OTEL_SERVICE_NAME": "unused"}
    subprocess.run([sys.executable, "-c", check], check=True, env=environment, timeout=60)


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["otlp"]),
    ],
)
def test_which_variables_turn_tracing_on(env: dict[str, str], exporters: list[str]) -> None:
    from gateway.tracing import exporters_wanted

    assert exporters_wanted(env) == exporters
