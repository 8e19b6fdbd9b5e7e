"""The `leadgate` command: run the gateway, migrate, and manage tenants and keys.

Scripting commands take `--json` and print exactly one JSON object (or list) on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TextIO, TypeVar

import asyncpg
import click
import orjson
from rich.console import Console
from rich.table import Column, Table

from gateway import db
from gateway.cli_secrets import secrets_group
from gateway.constants import SCOPES
from gateway.crypto import Cipher, SecretKeysMissing
from gateway.deals.currencies import currency_code
from gateway.keys import LIST_KEYS, REVOKE_KEY, create_key
from gateway.settings import Settings, SettingsError, load_settings
from gateway.tenants import (
    GET_DEFAULT_CURRENCY,
    LIST_TENANTS,
    create_tenant,
    parse_stage_list,
    set_default_currency,
    tenant_json,
    update_tenant,
)

T = TypeVar("T")
console = Console(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None
    return settings


def _announced(settings: Settings, name: str, example: str) -> str:
    """A configured URL, or else the one a running `leadgate dev` announced."""
    configured: str | None = getattr(settings, name)
    if configured:
        return configured
    announced = settings.data_dir / "urls.json"
    if announced.is_file():
        url: str = orjson.loads(announced.read_bytes())[name]
        return url
    raise click.UsageError(
        f"LEADGATE_{name.upper()} is not set (and no `leadgate dev` is running in "
        f"{settings.data_dir}); set it, e.g. {example}"
    )


def database_url(settings: Settings) -> str:
    return _announced(settings, "database_url", "postgresql://postgres@127.0.0.1:5432/leadgate")


def redis_url(settings: Settings) -> str:
    return _announced(settings, "redis_url", "redis://127.0.0.1:6379/0")


def _cipher(ctx: click.Context) -> Cipher:
    """What encrypts secrets at rest; without LEADGATE_SECRET_KEYS, an error naming it."""
    try:
        return Cipher.from_settings(_settings(ctx))
    except SecretKeysMissing as e:
        raise click.ClickException(str(e)) from e


def _resolved(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"database_url": database_url(settings), "redis_url": redis_url(settings)}
    )


def with_connection(
    fn: Callable[..., Awaitable[T]],
) -> Callable[..., T]:
    """Run an async command body with a connection to the configured database."""

    @wraps(fn)
    @click.pass_context
    def command(ctx: click.Context, /, **kwargs: Any) -> T:
        url = database_url(_settings(ctx))

        async def run() -> T:
            conn = await asyncpg.connect(url)
            try:
                await db.init_connection(conn)
                return await fn(conn, **kwargs)
            finally:
                await conn.close()

        return _run(run())

    return command


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except (OSError, asyncpg.PostgresError) as e:
        raise click.ClickException(f"database error: {e}") from e


def emit_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_UTC_Z).decode())


@click.group()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file (also LEADGATE_CONFIG).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """Leadgate: lead ingestion and signed webhooks, self-hosted."""
    try:
        ctx.obj = load_settings(config)
    except SettingsError as e:
        raise click.ClickException(str(e)) from e


main.add_command(secrets_group)


@main.command()
@click.option(
    "--check", is_flag=True, help="Apply nothing; exit 1 if the database is behind this release."
)
@click.pass_context
def migrate(ctx: click.Context, check: bool) -> None:
    """Bring the schema to this release's version; safe from several replicas at once.

    Then encrypt any secret still stored in clear (rows from before secrets were encrypted)."""
    from gateway import migrations

    settings = _settings(ctx)
    url = database_url(settings)
    try:
        if check:
            found = _run(migrations.status(url))
            if not found.up_to_date:
                raise click.ClickException(found.describe())
            console.print(found.describe())
            return
        before = _run(migrations.migrate(url, progress=console.print))
    except migrations.MigrationError as e:
        raise click.ClickException(str(e)) from e
    if before.up_to_date:
        console.print(before.describe())
    else:
        console.print(f"[green]applied schema version {before.schema.version}[/green]")
    _run(_encrypt_clear_secrets(url, settings))


async def _encrypt_clear_secrets(url: str, settings: Settings) -> None:
    """Rows from before secrets were encrypted are encrypted now, when a key is configured."""
    from gateway.rekey import count_clear, rekey

    conn = await asyncpg.connect(url)
    try:
        if not settings.secret_keys:
            if clear := await count_clear(conn):
                console.print(
                    f"[yellow]{clear} rows hold secrets in clear[/yellow]: set "
                    "LEADGATE_SECRET_KEYS and run `leadgate migrate` again to encrypt them"
                )
            return
        done = await rekey(conn, Cipher.from_settings(settings), only_clear=True)
        if encrypted := sum(done.changed.values()):
            console.print(f"encrypted the secrets of {encrypted} rows that held them in clear")
    finally:
        await conn.close()


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the HTTP gateway."""
    from gateway.server import serve as run_server

    _cipher(ctx)  # refuse to start without LEADGATE_SECRET_KEYS
    run_server(_resolved(_settings(ctx)))


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run a delivery worker (arq) with its relay."""
    from workers.main import run_worker

    _cipher(ctx)  # refuse to start without LEADGATE_SECRET_KEYS
    run_worker(_resolved(_settings(ctx)))


@main.command()
@click.option("--endpoint", "endpoint_id", help="Only this endpoint's deliveries.")
@click.option("--failed", is_flag=True, help="Only failed attempts (retrying or failed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def tail(ctx: click.Context, endpoint_id: str | None, failed: bool, as_json: bool) -> None:
    """Follow delivery outcomes of all workers, live."""
    from workers.tail import follow

    url = redis_url(_settings(ctx))
    if not as_json:
        console.print(f"following delivery outcomes (Ctrl-C to stop) on {url.split('@')[-1]}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(url, endpoint=endpoint_id, failed_only=failed, as_json=as_json))


@main.command()
@click.option("--endpoint", "endpoint_id", required=True)
@click.option("--since", type=click.DateTime(), required=True, help="Created at or after (UTC).")
@click.option(
    "--state",
    "states",
    multiple=True,
    default=["failed"],
    show_default=True,
    type=click.Choice(["failed", "succeeded", "cancelled"]),
)
@click.pass_context
def replay(ctx: click.Context, endpoint_id: str, since: datetime, states: tuple[str, ...]) -> None:
    """Send an endpoint's deliveries again (a fresh retry schedule each)."""
    from gateway.deliveries.sql import ENDPOINT_TENANT, REPLAY_ENDPOINT
    from gateway.wake import arq_pool, send_wake

    settings = _settings(ctx)
    dsn, redis_dsn = database_url(settings), redis_url(settings)

    async def run() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            tenant = await conn.fetchval(ENDPOINT_TENANT, endpoint_id)
            if tenant is None:
                raise click.ClickException(f"no endpoint {endpoint_id}")
            since_utc = since.replace(tzinfo=UTC)
            rows = await conn.fetch(REPLAY_ENDPOINT, endpoint_id, tenant, since_utc, list(states))
        finally:
            await conn.close()
        redis = arq_pool(redis_dsn)
        try:
            if rows:
                await send_wake(redis)
        finally:
            await redis.aclose(close_connection_pool=True)
        return len(rows)

    console.print(f"replaying [bold]{_run(run())}[/bold] deliveries")


@main.command()
@click.option("--fresh", is_flag=True, help="Delete the dev data folder first.")
@click.pass_context
def dev(ctx: click.Context, fresh: bool) -> None:
    """Embedded Postgres and Redis (unless configured), a demo tenant and key, and the gateway."""
    from gateway.devmode import run_dev

    run_dev(_settings(ctx), fresh=fresh)


@main.group()
def tenants() -> None:
    """Create and configure tenants."""


@tenants.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print {id, name} as JSON.")
@with_connection
async def tenants_create(conn: asyncpg.Connection, name: str, as_json: bool) -> None:
    row = await create_tenant(conn, name)
    if as_json:
        emit_json({"id": row["id"], "name": row["name"]})
    else:
        console.print(f"created tenant [bold]{row['id']}[/bold] ({row['name']})")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def tenants_list(conn: asyncpg.Connection, as_json: bool) -> None:
    rows = [tenant_json(r) for r in await conn.fetch(LIST_TENANTS)]
    if as_json:
        emit_json(rows)
        return
    table = Table(
        Column("id", no_wrap=True), "name", "stages", "exit stages", "match phone", "rate limit"
    )
    for t in rows:
        table.add_row(
            t["id"], t["name"], ", ".join(t["stages"]), ", ".join(t["exit_stages"]),
            "yes" if t["match_phone"] else "no", str(t["rate_limit"] or "default"),
        )  # fmt: skip
    Console().print(table)


def _stage_option(value: str | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        return parse_stage_list(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=name) from e


@tenants.command("update")
@click.argument("tenant_id")
@click.option("--name")
@click.option("--stages", help='Ordered pipeline, e.g. "Form Started,Application Submitted,Paid".')
@click.option("--exit-stages", help="Stages reachable from any stage, e.g. lost,rejected.")
@click.option("--match-phone/--no-match-phone", default=None, help="Match leads by phone too.")
@click.option("--rate-limit", type=click.IntRange(min=0), help="Requests/minute per key; 0 resets.")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    help="Apply --rate-limit to this scope only (0 removes the scope's own limit).",
)
@click.option(
    "--converted-stages",
    help='Stages that count a lead as converted, e.g. "won,Paid"; "" resets to the last stage.',
)
@click.option(
    "--monthly-quota",
    type=click.IntRange(min=0),
    help="New leads a month (UTC) before postbacks that create get 429; 0 removes the quota.",
)
@click.option("--currency", help="ISO 4217 code deals take when they name none (default USD).")
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def tenants_update(
    conn: asyncpg.Connection,
    tenant_id: str,
    name: str | None,
    stages: str | None,
    exit_stages: str | None,
    match_phone: bool | None,
    rate_limit: int | None,
    scope: str | None,
    converted_stages: str | None,
    monthly_quota: int | None,
    currency: str | None,
    as_json: bool,
) -> None:
    code = _currency_option(currency)
    if scope is not None and rate_limit is None:
        raise click.BadParameter("--scope goes with --rate-limit", param_hint="--scope")
    per_scope = (scope, rate_limit) if scope is not None and rate_limit is not None else None
    try:
        row = await update_tenant(
            conn,
            tenant_id,
            name=name,
            stages=_stage_option(stages, "--stages"),
            exit_stages=() if exit_stages == "" else _stage_option(exit_stages, "--exit-stages"),
            match_phone=match_phone,
            rate_limit=rate_limit if scope is None else None,
            scope_rate_limit=per_scope,
            converted_stages=()
            if converted_stages == ""
            else _stage_option(converted_stages, "--converted-stages"),
            monthly_quota=monthly_quota,
        )
    except ValueError as e:
        hint = "--converted-stages" if "is not a stage" in str(e) else "--stages/--exit-stages"
        raise click.BadParameter(str(e), param_hint=hint) from e
    if row is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    if code is not None:
        await set_default_currency(conn, tenant_id, code)
    if as_json:
        currency_now = await conn.fetchval(GET_DEFAULT_CURRENCY, tenant_id)
        emit_json({**tenant_json(row), "default_currency": currency_now})
    else:
        console.print(f"updated tenant [bold]{row['id']}[/bold]")


def _currency_option(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return currency_code(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--currency") from e


def _parse_scopes(value: str) -> list[str]:
    scopes = [s.strip() for s in value.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise click.BadParameter(
            f"unknown scope(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SCOPES)}",
            param_hint="--scopes",
        )
    return scopes


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--scopes", default=",".join(SCOPES), show_default=True)
@click.option("--mapping", help="The sender mapping its postbacks go through by default.")
@click.option("--json", "as_json", is_flag=True, help="Print {id, key} as JSON.")
@with_connection
async def keys_create(
    conn: asyncpg.Connection, tenant_id: str, scopes: str, mapping: str | None, as_json: bool
) -> None:
    from gateway.dialects.mappings import mapping_exists

    scope_list = _parse_scopes(scopes)
    if mapping is not None and not await mapping_exists(conn, tenant_id, mapping):
        raise click.BadParameter(
            f"tenant {tenant_id} has no mapping {mapping!r}", param_hint="--mapping"
        )
    try:
        row, key = await create_key(conn, tenant_id, scope_list, mapping)
    except asyncpg.ForeignKeyViolationError as e:
        raise click.ClickException(f"no tenant {tenant_id}") from e
    if as_json:
        emit_json({"id": row["id"], "key": key})
    else:
        console.print(f"created key [bold]{row['id']}[/bold] ({', '.join(row['scopes'])})")
        console.print("the key is shown only now; store it safely:")
        click.echo(key)


@keys.command("list")
@click.option("--tenant", "tenant_id")
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def keys_list(conn: asyncpg.Connection, tenant_id: str | None, as_json: bool) -> None:
    rows = [dict(r) for r in await conn.fetch(LIST_KEYS, tenant_id)]
    if as_json:
        emit_json(rows)
        return
    table = Table(
        Column("id", no_wrap=True),
        Column("tenant", no_wrap=True),
        "key",
        "scopes",
        "created",
        "revoked",
    )
    for k in rows:
        table.add_row(
            k["id"], k["tenant_id"], k["hint"] + "…", ",".join(k["scopes"]),
            k["created_at"].isoformat(timespec="seconds"),
            k["revoked_at"].isoformat(timespec="seconds") if k["revoked_at"] else "",
        )  # fmt: skip
    Console().print(table)


@keys.command("revoke")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def keys_revoke(conn: asyncpg.Connection, key_id: str, as_json: bool) -> None:
    row = await conn.fetchrow(REVOKE_KEY, key_id)
    if row is None:
        raise click.ClickException(f"no key {key_id}")
    if as_json:
        emit_json({"id": row["id"], "revoked_at": row["revoked_at"]})
    else:
        console.print(f"revoked key [bold]{row['id']}[/bold]")


@main.group()
def endpoints() -> None:
    """Register and list webhook endpoints."""


@endpoints.command("add")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("url")
@click.option("--events", default="*", show_default=True, help="Comma-separated: lead.*,…")
@click.option("--description")
@click.option(
    "--template", type=click.File(encoding="utf-8"), help="A JSONata payload template file."
)
@click.option("--json", "as_json", is_flag=True, help="Print the endpoint and its secret.")
@click.pass_context
def endpoints_add(
    ctx: click.Context,
    tenant_id: str,
    url: str,
    events: str,
    description: str | None,
    template: TextIO | None,
    as_json: bool,
) -> None:
    from gateway.endpoints.store import EndpointRefused, add_endpoint, parse_spec

    settings = _settings(ctx)
    dsn, cipher = database_url(settings), _cipher(ctx)

    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(dsn)
        try:
            await db.init_connection(conn)
            spec = parse_spec(
                {
                    "url": url,
                    "event_types": [e.strip() for e in events.split(",") if e.strip()],
                    "description": description,
                    "template": template.read() if template else None,
                }
            )
            return await add_endpoint(
                conn, tenant_id, spec, allow_private=settings.allow_private_destinations,
                cipher=cipher,
            )  # fmt: skip
        finally:
            await conn.close()

    try:
        endpoint = _run(run())
    except EndpointRefused as e:
        raise click.BadParameter(str(e), param_hint=e.field) from e
    if as_json:
        emit_json(endpoint)
    else:
        console.print(f"added endpoint [bold]{endpoint['id']}[/bold] → {endpoint['url']}")
        console.print("its signing secret (shown only now):")
        click.echo(endpoint["secret"])


@endpoints.command("list")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def endpoints_list(conn: asyncpg.Connection, tenant_id: str, as_json: bool) -> None:
    from gateway.endpoints.sql import LIST_ENDPOINTS
    from gateway.endpoints.store import endpoint_json

    rows = [endpoint_json(r) for r in await conn.fetch(LIST_ENDPOINTS, tenant_id)]
    if as_json:
        emit_json(rows)
        return
    table = Table(Column("id", no_wrap=True), "url", "events", "enabled", "failures")
    for e in rows:
        table.add_row(
            e["id"], e["url"], ",".join(e["event_types"]),
            "yes" if e["enabled"] else f"no: {e['disabled_reason']}",
            str(e["health"]["consecutive_failures"]),
        )  # fmt: skip
    Console().print(table)


@main.group()
def sources() -> None:
    """Register inbound sources (providers posting to /v1/inbound/NAME)."""


@sources.command("add")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("name")
@click.option(
    "--scheme", type=click.Choice(["standard", "hmac-sha256-hex"]), default="standard",
    show_default=True,
)  # fmt: skip
@click.option("--header", help="hmac-sha256-hex: the header carrying the signature.")
@click.option("--prefix", default="", help="hmac-sha256-hex: text before the hex, e.g. sha256=.")
@click.option("--secret", help="The provider's secret (a whsec_… one is generated otherwise).")
@click.option("--tolerance", type=click.IntRange(1, 86_400), default=300, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the source and its secret.")
@with_connection
async def sources_add(
    conn: asyncpg.Connection,
    tenant_id: str,
    name: str,
    scheme: str,
    header: str | None,
    prefix: str,
    secret: str | None,
    tolerance: int,
    as_json: bool,
) -> None:
    from pydantic import ValidationError

    from gateway.errors import ApiError
    from gateway.inbound.models import SourceIn
    from gateway.inbound.views import add_source

    signature: dict[str, Any] = {"scheme": scheme}
    if scheme != "standard":
        signature.update(header=header, prefix=prefix)
    try:
        spec = SourceIn.model_validate(
            {"name": name, "secret": secret, "signature": signature,
             "tolerance_seconds": tolerance}
        )  # fmt: skip
        source = await add_source(conn, tenant_id, spec, _cipher(click.get_current_context()))
    except ValidationError as e:
        first = e.errors()[0]
        raise click.BadParameter(first["msg"], param_hint=".".join(map(str, first["loc"]))) from e
    except ApiError as e:
        raise click.ClickException(e.message) from e
    except asyncpg.ForeignKeyViolationError as e:
        raise click.ClickException(f"no tenant {tenant_id}") from e
    if as_json:
        emit_json(source)
    else:
        console.print(f"added source [bold]{name}[/bold]: POST /v1/inbound/{name}")
        console.print("its signing secret (shown only now):")
        click.echo(source["secret"])


@sources.command("list")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def sources_list(conn: asyncpg.Connection, tenant_id: str, as_json: bool) -> None:
    from gateway.inbound.sql import LIST_SOURCES
    from gateway.inbound.views import source_json

    rows = [source_json(r) for r in await conn.fetch(LIST_SOURCES, tenant_id)]
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "scheme", "tolerance s", "created")
    for r in rows:
        table.add_row(r["name"], r["signature"]["scheme"], str(r["tolerance_seconds"]),
                      r["created_at"].isoformat(timespec="seconds"))  # fmt: skip
    Console().print(table)


# Command groups kept in modules of their own, built on the helpers above.
from gateway.cli_dialects import mappings, templates  # noqa: E402
from gateway.cli_scoring import scoring  # noqa: E402

main.add_command(mappings)
main.add_command(templates)
main.add_command(scoring)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
