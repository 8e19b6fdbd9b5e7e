"""The API as users' tools see it: schemathesis drives every operation of the OpenAPI document
against a real `leadgate serve` process and finds no 5xx, no undocumented status code, no
response that breaks its own schema, and no wrong content type.

The document is the one the app serves (built from the same models that validate requests),
loaded without a server; the cases run over HTTP against the process the fixture starts.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from gateway.app import OPERATIONS
from gateway.embedded import free_port
from gateway.health import package_version
from gateway.keys import create_key
from gateway.openapi import build_document
from gateway.tenants import create_tenant
from tests.conftest import TEST_SECRET_KEYS, Servers

schema = schemathesis.openapi.from_dict(build_document(OPERATIONS, package_version()))

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(servers: Servers) -> Iterator[tuple[str, dict[str, str]]]:
    """A real gateway process, and the headers of a key with every scope."""
    import asyncpg

    async def make_key() -> str:
        conn = await asyncpg.connect(servers.database_url)
        try:
            tenant = await create_tenant(conn, "schemathesis")
            _, key = await create_key(conn, tenant["id"], ["ingest", "read", "manage"])
            return key
        finally:
            await conn.close()

    key = asyncio.run(make_key())
    port = free_port()
    leadgate = os.path.join(os.path.dirname(sys.executable), "leadgate")
    env = {**os.environ, "LEADGATE_DATABASE_URL": servers.database_url,
           "LEADGATE_REDIS_URL": servers.redis_url, "LEADGATE_PORT": str(port),
           "LEADGATE_LOG_FORMAT": "json", "LEADGATE_RATE_LIMIT": "1000000",
           "LEADGATE_SECRET_KEYS": TEST_SECRET_KEYS}  # fmt: skip
    proc = subprocess.Popen(
        [leadgate, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)
    yield base, {"Authorization": f"Bearer {key}"}
    proc.terminate()
    proc.wait(10)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.filter_too_much],
)  # fmt: skip
def test_operation_conforms_to_its_schema(case: Any, live: tuple[str, dict[str, str]]) -> None:
    base, headers = live
    case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)
