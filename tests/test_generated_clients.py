"""Clients generated from `/v1/openapi.json` work: openapi-python-client's whole package imports
and posts, lists and patches leads against a real `leadgate serve`; datamodel-code-generator's
models parse what that server answers.

Each generator runs as its users run it, on the document the live server serves.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import requests

from tests.conftest import Servers, TenantFactory
from tests.live import live_gateway

BIN = Path(sys.executable).parent
PACKAGE = "leadgate_client"  # openapi-python-client names it after the document's title


@pytest.fixture(scope="module")
def gateway(servers: Servers) -> Iterator[str]:
    with live_gateway(servers) as base:
        yield base


@pytest.fixture(scope="module")
def document(gateway: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_bytes(requests.get(f"{gateway}/v1/openapi.json", timeout=5).content)
    return path


def _generate(*command: str | Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def generated(document: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The openapi-python-client package for the served document, importable while in use."""
    out = tmp_path_factory.mktemp("client")
    config = out / "config.yaml"
    config.write_text("post_hooks: []\n")  # no formatter: the code is tested as generated
    _generate(BIN / "openapi-python-client", "generate", "--path", document,
              "--output-path", out / PACKAGE, "--meta", "none", "--config", config)  # fmt: skip
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
async def api(
    generated: ModuleType, gateway: str, make_tenant: TenantFactory
) -> AsyncIterator[Any]:
    """An AuthenticatedClient of the generated package, with a key of every scope."""
    tenant = await make_tenant()
    async with generated.AuthenticatedClient(base_url=gateway, token=tenant.key) as client:
        yield client


def test_every_generated_module_imports(generated: ModuleType) -> None:
    names = [m.name for m in pkgutil.walk_packages(generated.__path__, f"{PACKAGE}.")]
    for name in names:
        importlib.import_module(name)
    # The modules that once failed (a body under two content types) are among them.
    for writes in ("api.ingest.post_postback", "api.leads.create_lead", "api.leads.patch_lead"):
        assert f"{PACKAGE}.{writes}" in names


async def test_generated_client_creates_lists_and_patches_a_lead(api: Any) -> None:
    models = _module("models")
    created = await _module("api.leads.create_lead").asyncio_detailed(
        client=api,
        body=models.PostbackIn.from_dict({"email": "Ada@Example.com", "first_name": "Ada"}),
    )
    assert created.status_code == 201, created.content
    lead = created.parsed.data
    assert (created.parsed.created, lead.email, lead.stage) == (True, "ada@example.com", "new")

    page = await _module("api.leads.list_leads").asyncio_detailed(client=api, limit=10)
    assert page.status_code == 200, page.content
    assert ([found.id for found in page.parsed.data], page.parsed.total) == ([lead.id], 1)

    patched = await _module("api.leads.patch_lead").asyncio_detailed(
        lead.id, client=api, body=models.LeadPatch.from_dict({"stage": "qualified"})
    )
    assert patched.status_code == 200, patched.content
    assert patched.parsed.data.stage == "qualified"
    history = [(c.from_stage, c.to_stage) for c in patched.parsed.data.stage_history]
    assert history == [(None, "new"), ("new", "qualified")]


async def test_generated_client_posts_a_form_body_as_a_form(api: Any) -> None:
    models = _module("models")
    form = models.PostbackInForm.from_dict({"email": "grace@example.com", "stage": "contacted"})
    form.additional_properties["custom_data[vertical]"] = "solar"
    posted = await _module("api.ingest.post_postback").asyncio_detailed(client=api, body=form)
    assert posted.status_code == 201, posted.content
    assert posted.parsed.data.stage == "contacted"
    assert posted.parsed.data.custom_data.to_dict() == {"vertical": "solar"}


async def test_generated_client_sends_the_idempotency_key(api: Any) -> None:
    models = _module("models")
    create = _module("api.leads.create_lead")
    body = models.PostbackIn.from_dict({"email": "alan@example.com"})
    first = await create.asyncio_detailed(client=api, body=body, idempotency_key="order-42")
    again = await create.asyncio_detailed(client=api, body=body, idempotency_key="order-42")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content


async def test_datamodel_code_generator_models_parse_real_responses(
    gateway: str, document: Path, tmp_path: Path, make_tenant: TenantFactory
) -> None:
    out = tmp_path / "leadgate_models.py"
    _generate(BIN / "datamodel-codegen", "--input", document, "--input-file-type", "openapi",
              "--output", out, "--output-model-type", "pydantic_v2.BaseModel",
              "--formatters", "builtin")  # fmt: skip
    sys.path.insert(0, str(tmp_path))
    try:
        generated = importlib.import_module("leadgate_models")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("leadgate_models", None)
    headers = {"Authorization": f"Bearer {(await make_tenant()).key}"}
    body = generated.PostbackIn(email="ada@example.com", utm_source="google")
    async with aiohttp.ClientSession(gateway) as http:
        async with http.post(
            "/v1/leads",
            data=body.model_dump_json(exclude_none=True),
            headers={**headers, "Content-Type": "application/json"},
        ) as created:
            assert created.status == 201, await created.text()
            lead = generated.IngestResponse.model_validate(await created.json()).data
        async with http.get("/v1/leads", headers=headers) as listed:
            page = generated.LeadPage.model_validate(await listed.json())
        async with http.get("/v1/leads") as refused:
            error = generated.ErrorBody.model_validate(await refused.json())
    assert [(found.id, found.utm_source) for found in page.data] == [(lead.id, "google")]
    assert (refused.status, error.error.code) == (401, "unauthorized")
