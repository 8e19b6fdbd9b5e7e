"""OpenTelemetry traces: off unless an exporter is configured, and then one trace per request.

Switched by the standard variables, read once per process at start-up (`from_environment`):

- `OTEL_SDK_DISABLED=true` turns tracing off, whatever else is set;
- `OTEL_TRACES_EXPORTER` names the exporters (`otlp`, `console`, comma-separated); `none` is off;
- unset, tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
  is set (exporting OTLP over HTTP/protobuf), and off otherwise.

Everything else is the SDK's own variables: `OTEL_SERVICE_NAME` (default `leadgate-gateway`,
`leadgate-worker`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`,
`OTEL_EXPORTER_OTLP_*`, `OTEL_PROPAGATORS`.

Off, nothing of OpenTelemetry is even imported: the request path, the batcher and the worker
test one `None` and go on. On, a postback's trace is

    POST /v1/postback       the request (SERVER)
    ├─ leadgate.commit       its wait for its batch and the commit (arrival → answered),
    │                        linked to the batch's span
    ├─ leadgate.batch        the batch's transaction, in the trace of its first request only,
    │  └─ INSERT, SELECT, …  linked to every request it carried; its statements (asyncpg)
    └─ leadgate.attempt      each delivery attempt of each event the request wrote (worker)
       └─ POST               the webhook (CLIENT; -aiohttp-client), which carries `traceparent`

An event keeps its request's W3C `traceparent` (the `events.traceparent` column), so attempts,
retries included, continue the request's trace whichever worker makes them and however late.
A batch is one transaction for many requests, so its span can have only one parent: it goes
under its first request and links to all of them, and every request's own `leadgate.commit`
span links back to it (OpenTelemetry's pattern for batch processing).

Query strings never reach a span: a GET postback carries its API key and a lead's personal
data there, and an endpoint's URL may carry a receiver's token.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import aiohttp
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

TRACEPARENT = "traceparent"
GATEWAY_SERVICE = "leadgate-gateway"
WORKER_SERVICE = "leadgate-worker"
INSTRUMENTATION = "leadgate"

# Probes and scrapes, every few seconds each: no trace.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TracingError(Exception):
    """The OTEL_* variables ask for something this install cannot do; the message says what."""


def exporters_wanted(env: Mapping[str, str] | None = None) -> list[str]:
    """The exporters the environment asks for; empty: tracing is off."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    named = [e for e in named if e]
    if named:
        return [] if "none" in named else named
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return ["otlp"]
    return []


def from_environment(service: str) -> Tracing | None:
    """This process's tracing, as the OTEL_* variables configure it; None when off.

    On, it also becomes the global tracer provider, so that any library tracing through the
    OpenTelemetry API reports into the same traces."""
    exporters = exporters_wanted()
    if not exporters:
        return None
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    return enable(provider)


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; use otlp or console")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as e:
            raise TracingError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "installed; Leadgate ships http/protobuf"
            ) from e
        return GrpcExporter()
    raise TracingError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}")


def enable(provider: TracerProvider) -> Tracing:
    """Trace into `provider` (tests give one with an in-memory exporter); Postgres statements
    are instrumented process-wide (opentelemetry-instrumentation-asyncpg)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(tracer_provider=provider)
    return Tracing(provider, provider.get_tracer(INSTRUMENTATION))


def disable() -> None:
    """Undo `enable`'s process-wide instrumentation (tests)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Work in this block (and in tasks created in it) makes no spans: the background loops
    (claims, the completer, the key listener's heartbeat) belong to no request's trace."""
    if not _asyncpg_instrumented():
        yield
        return
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def _asyncpg_instrumented() -> bool:
    import sys

    module = sys.modules.get("opentelemetry.instrumentation.asyncpg")
    if module is None:  # never imported: nothing is instrumented
        return False
    return bool(module.AsyncPGInstrumentor().is_instrumented_by_opentelemetry)


def strip_query(url: str) -> str:
    """A URL without its query string, fragment or credentials."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class Tracing:
    """One process's tracer, and the pieces Leadgate traces with."""

    provider: TracerProvider
    tracer: Tracer

    def middleware(self) -> Any:
        """The request span of every request but the probes (/healthz, /readyz, /metrics).

        Leadgate's own rather than opentelemetry-instrumentation-aiohttp-server's: that one
        (0.66b1) works only once its instrumentor has replaced aiohttp's Application class for
        the whole process, and it records the query string, where a GET postback carries its
        API key and the lead's data. The span follows the HTTP semantic conventions."""
        from aiohttp import web
        from opentelemetry import propagate, trace

        tracer = self.tracer

        @web.middleware
        async def traced(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path in UNTRACED_PATHS:
                return await handler(request)  # type: ignore[no-any-return]
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else None
            attributes = {
                "http.request.method": request.method,
                "url.scheme": request.scheme,
                "url.path": request.path,
                "server.address": request.host.rpartition(":")[0] or request.host,
                "network.protocol.version": f"{request.version.major}.{request.version.minor}",
            }
            if route:
                attributes["http.route"] = route
            if agent := request.headers.get("User-Agent"):
                attributes["user_agent.original"] = agent
            with tracer.start_as_current_span(
                f"{request.method} {route}" if route else request.method,
                context=propagate.extract(request.headers),
                kind=trace.SpanKind.SERVER,
                attributes=attributes,
            ) as span:
                try:
                    response: web.StreamResponse = await handler(request)
                except web.HTTPException as e:  # a redirect the dashboard raises
                    span.set_attribute("http.response.status_code", e.status)
                    raise
                span.set_attribute("http.response.status_code", response.status)
                if response.status >= 500:
                    span.set_status(trace.StatusCode.ERROR)
                return response

        return traced

    def client_trace_config(self) -> aiohttp.TraceConfig:
        """A span per webhook, whose context goes out as `traceparent`
        (opentelemetry-instrumentation-aiohttp-client)."""
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config

        config: aiohttp.TraceConfig = create_trace_config(
            url_filter=lambda url: strip_query(str(url)),
            tracer_provider=self.provider,
        )
        return config

    def current(self) -> tuple[Span | None, str | None]:
        """The current span (a request's) and its `traceparent`, to save with its events;
        (None, None) outside any span."""
        from opentelemetry import trace

        span = trace.get_current_span()
        context = span.get_span_context()
        if not context.is_valid:
            return None, None
        flags = int(context.trace_flags)
        return span, f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"

    def batch_span(self, spans: Sequence[Span]) -> Any:
        """The span of one batch's transaction: a child of its first request, linked to all
        (a trace of its own if none of its requests is traced)."""
        from opentelemetry import trace
        from opentelemetry.context import Context

        links = [trace.Link(s.get_span_context()) for s in spans]
        return self.tracer.start_as_current_span(
            "leadgate.batch",
            context=trace.set_span_in_context(spans[0]) if spans else Context(),
            links=links,
            attributes={"leadgate.batch.size": len(spans)},
        )

    def commit_span(
        self, request: Span, batch: Span, started_ns: int, size: int, status: int
    ) -> None:
        """A request's share of its batch, from its arrival to its answer, linked to the batch
        (none for a request whose trace is not sampled: nothing would record it)."""
        if not request.is_recording():
            return
        from opentelemetry import trace

        span = self.tracer.start_span(
            "leadgate.commit",
            context=trace.set_span_in_context(request),
            links=[trace.Link(batch.get_span_context())],
            start_time=started_ns,
            attributes={"leadgate.batch.size": size, "http.response.status_code": status},
        )
        if status >= 500:
            span.set_status(trace.StatusCode.ERROR)
        span.end()

    @contextlib.contextmanager
    def attempt_span(self, traceparent: str | None, attributes: dict[str, Any]) -> Iterator[Span]:
        """A delivery attempt, continuing the trace of the request that wrote its event.

        It starts from that context alone (not the claim loop's, whose spans are suppressed),
        so the webhook's own span and header are made beneath it."""
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.context import Context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        parent: Context = Context()
        if traceparent:
            parent = TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent}, parent)
        token = otel_context.attach(parent)
        try:
            with self.tracer.start_as_current_span(
                "leadgate.attempt", kind=trace.SpanKind.INTERNAL, attributes=attributes
            ) as span:
                yield span
        finally:
            otel_context.detach(token)
