"""Traces, in process: a postback, its batch and every attempt at its events are one trace.

The gateway and a worker run in the test's loop with tracing into the SDK's in-memory
exporter (gateway/tracing.py); a real receiver records the `traceparent` each webhook carries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway import tracing
from gateway.app import create_app
from gateway.settings import Settings
from tests.conftest import Tenant
from tests.receivers import Receiver
from tests.workers.conftest import ReceiverFactory, add_endpoint, post_lead, wait_until
from workers.main import running_in_loop

Client = TestClient[Any, Any]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    yield InMemorySpanExporter()
    tracing.disable()


@pytest.fixture
def traced(exporter: InMemorySpanExporter) -> tracing.Tracing:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracing.enable(provider)


@contextlib.asynccontextmanager
async def worker(settings: Settings, traced: tracing.Tracing | None) -> AsyncIterator[None]:
    async with running_in_loop(settings, tracing=traced) as watch:
        yield
    assert watch.cancelled() or watch.exception() is None


def parse(traceparent: str) -> tuple[int, int]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    return int(trace_id, 16), int(span_id, 16)


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ids(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


Spans = tuple[ReadableSpan, ...]


async def finished(exporter: InMemorySpanExporter, check: Callable[[Spans], bool]) -> Spans:
    async def done() -> bool:
        return check(exporter.get_finished_spans())

    await wait_until(done)
    return exporter.get_finished_spans()


async def test_a_postback_its_batch_and_each_attempt_are_one_trace(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    conn: asyncpg.Connection,
    tenant: Tenant,
    receiver_factory: ReceiverFactory,
    traced: tracing.Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    client = await aiohttp_client(create_app(settings, traced))
    receiver = await receiver_factory(statuses=[500, 200])  # two attempts: a retry, then done
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    exporter.clear()
    async with worker(settings, traced):
        lead = await post_lead(client, tenant, email="ada@example.com")
        got = await receiver.wait_for(2)
        spans = await finished(exporter, lambda s: len(named(s, "leadgate.attempt")) == 2)

    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.name == "POST /v1/postback"
    trace_id, request_id = ids(request)
    (batch,) = named(spans, "leadgate.batch")
    (commit,) = named(spans, "leadgate.commit")
    attempts = sorted(named(spans, "leadgate.attempt"), key=lambda s: s.start_time or 0)
    webhooks = [s for s in spans if s.kind == SpanKind.CLIENT and s.name == "POST"]

    # One trace: the batch and the commit under the request, each attempt continuing it.
    for span in (batch, commit, *attempts, *webhooks):
        assert ids(span)[0] == trace_id, span.name
    assert parent_id(batch) == parent_id(commit) == request_id
    assert [link.context.span_id for link in commit.links] == [ids(batch)[1]]
    assert [link.context.span_id for link in batch.links] == [request_id]
    assert batch.attributes is not None and batch.attributes["leadgate.batch.size"] == 1
    # The batch's statements (asyncpg's instrumentation) are its children.
    statements = [s for s in spans if parent_id(s) == ids(batch)[1]]
    assert statements and all(s.kind == SpanKind.CLIENT for s in statements)
    assert [parent_id(a) for a in attempts] == [request_id, request_id]
    assert [a.attributes["leadgate.outcome"] for a in attempts if a.attributes] == [
        "retrying",
        "succeeded",
    ]
    assert [a.attributes["http.response.status_code"] for a in attempts if a.attributes] == [
        500,
        200,
    ]
    # Each webhook carries the trace: its own span's id, under its attempt's span.
    for received, attempt in zip(got, attempts, strict=True):
        sent_trace, sent_span = parse(received.headers["traceparent"])
        assert sent_trace == trace_id
        (webhook,) = [w for w in webhooks if ids(w)[1] == sent_span]
        assert parent_id(webhook) == ids(attempt)[1]
    stored = await conn.fetchval("SELECT traceparent FROM events WHERE lead_id = $1", lead["id"])
    assert parse(stored) == (trace_id, request_id)
    # The claim loop, the completer and the retention prune made no traces of their own.
    assert {ids(s)[0] for s in spans} == {trace_id}


async def test_postbacks_sharing_a_batch_keep_their_own_traces(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    tenant: Tenant,
    receiver: Receiver,
    traced: tracing.Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    # A long wait and five postbacks at once: they meet in one batch.
    settings = settings.model_copy(update={"batch_max_wait": 0.2})
    client = await aiohttp_client(create_app(settings, traced))
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    exporter.clear()
    async with worker(settings, traced):
        leads = await asyncio.gather(
            *(post_lead(client, tenant, email=f"p{i}@example.com") for i in range(5))
        )
        got = await receiver.wait_for(5)
        spans = await finished(exporter, lambda s: len(named(s, "leadgate.attempt")) == 5)

    requests = {ids(s)[0]: s for s in spans if s.kind == SpanKind.SERVER}
    assert len(requests) == 5
    (batch,) = named(spans, "leadgate.batch")
    assert {link.context.span_id for link in batch.links} == {ids(r)[1] for r in requests.values()}
    assert ids(batch)[0] in requests  # under the first request of the batch
    for commit in named(spans, "leadgate.commit"):
        assert parent_id(commit) == ids(requests[ids(commit)[0]])[1]
        assert [link.context.span_id for link in commit.links] == [ids(batch)[1]]
    assert len(named(spans, "leadgate.commit")) == 5
    # Each lead's webhook is in the trace of the request that created it.
    by_lead = {r.json()["data"]["id"]: parse(r.headers["traceparent"])[0] for r in got}
    for attempt in named(spans, "leadgate.attempt"):
        assert attempt.attributes is not None
        assert parent_id(attempt) == ids(requests[ids(attempt)[0]])[1]
    assert set(by_lead) == {lead["id"] for lead in leads}
    assert set(by_lead.values()) == set(requests)


async def test_query_strings_stay_out_of_spans(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    tenant: Tenant,
    traced: tracing.Tracing,
    exporter: InMemorySpanExporter,
) -> None:
    """A pixel's GET postback carries its API key and the lead's data in the query string."""
    client = await aiohttp_client(create_app(settings, traced))
    response = await client.get(
        "/v1/postback", params={"api_key": tenant.key, "email": "secret.person@example.com"}
    )
    assert response.status == 201
    spans = await finished(exporter, lambda s: any(x.kind == SpanKind.SERVER for x in s))
    (request,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert request.attributes is not None
    assert request.attributes["url.path"] == "/v1/postback"
    for span in spans:
        for value in (span.attributes or {}).values():
            assert tenant.key not in str(value) and "secret.person" not in str(value), span.name


async def test_tracing_off_sends_no_traceparent_and_exports_nothing(
    aiohttp_client: Callable[..., Awaitable[Client]],
    settings: Settings,
    conn: asyncpg.Connection,
    tenant: Tenant,
    receiver: Receiver,
    exporter: InMemorySpanExporter,
) -> None:
    # A provider exists in the process (as another library might have made), but Leadgate is
    # given no tracing: nothing reaches it, and no webhook carries a trace.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = await aiohttp_client(create_app(settings))
    await add_endpoint(client, tenant, receiver.url, event_types=["lead.created"])
    async with worker(settings, None):
        lead = await post_lead(client, tenant, email="quiet@example.com")
        (got,) = await receiver.wait_for(1)
    assert "traceparent" not in {h.lower() for h in got.headers}
    assert await conn.fetchval(
        "SELECT traceparent FROM events WHERE lead_id = $1", lead["id"]
    ) is None  # fmt: skip
    assert exporter.get_finished_spans() == ()
