"""The dialects on the command line: mappings add, keys and endpoints with them, preview."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import Servers
from tests.dialects.examples import CONFIG
from tests.test_cli import json_of, leadgate, new_tenant


async def test_a_mapping_added_from_a_file_is_a_keys_default(
    servers: Servers, client: TestClient[Any, Any], conn: asyncpg.Connection
) -> None:
    tenant_id = await new_tenant(servers)
    mapping_file = str(CONFIG / "mappings" / "salesos.jsonata")
    added = json_of(await leadgate(servers, "mappings", "add", "--tenant", tenant_id, "salesos",
                                   mapping_file, "--json"))  # fmt: skip
    assert added["name"] == "salesos"
    key = json_of(await leadgate(servers, "keys", "create", "--tenant", tenant_id, "--scopes",
                                 "ingest", "--mapping", "salesos", "--json"))["key"]  # fmt: skip
    response = await client.post(
        "/v1/postback", json={"contact_email": "cli@example.com", "contact_name": "Cli User"},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    lead = (await response.json())["data"]
    assert (lead["email"], lead["first_name"], lead["last_name"]) == (
        "cli@example.com", "Cli", "User",
    )  # fmt: skip


async def test_a_key_cannot_default_to_a_mapping_that_does_not_exist(servers: Servers) -> None:
    tenant_id = await new_tenant(servers)
    result = await leadgate(servers, "keys", "create", "--tenant", tenant_id, "--mapping", "nope")
    assert result.exit_code == 2
    assert "--mapping" in result.output and "'nope'" in result.output


async def test_a_mapping_that_does_not_compile_names_the_expression(
    servers: Servers, tmp_path: Path
) -> None:
    tenant_id = await new_tenant(servers)
    broken = tmp_path / "broken.jsonata"
    broken.write_text("{email: ")
    result = await leadgate(servers, "mappings", "add", "--tenant", tenant_id, "x", str(broken))
    assert result.exit_code == 2
    assert "expression" in result.output and "does not compile" in result.output


async def test_endpoints_add_takes_a_template_file(servers: Servers) -> None:
    tenant_id = await new_tenant(servers)
    template_file = str(CONFIG / "templates" / "leaditio.jsonata")
    endpoint = json_of(await leadgate(
        servers, "endpoints", "add", "--tenant", tenant_id, "https://crm.example.com/hook",
        "--template", template_file, "--json",
        env={"LEADGATE_ALLOW_PRIVATE_DESTINATIONS": "true"},
    ))  # fmt: skip
    assert endpoint["template"] == (CONFIG / "templates" / "leaditio.jsonata").read_text()


async def test_templates_preview_prints_the_body(servers: Servers) -> None:
    result = await leadgate(servers, "templates", "preview",
                            str(CONFIG / "templates" / "shortstack.jsonata"))  # fmt: skip
    body = json_of(result)
    assert body["event"] == "lead.created"
    assert body["data"]["leadId"].startswith("lead_")
