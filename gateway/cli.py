"""The `leadgate` command: run the gateway, migrate, and manage tenants and keys.

Scripting commands take `--json` and print exactly one JSON object (or list) on stdout.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import click
import orjson
from rich.console import Console
from rich.table import Column, Table

from gateway import db
from gateway.constants import SCOPES
from gateway.keys import LIST_KEYS, REVOKE_KEY, create_key
from gateway.settings import Settings, SettingsError, load_settings
from gateway.tenants import (
    FIND_TENANT_BY_NAME,
    LIST_TENANTS,
    create_tenant,
    parse_stage_list,
    tenant_json,
    update_tenant,
)

T = TypeVar("T")
console = Console(stderr=True)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_object(Settings)
    assert settings is not None
    return settings


def database_url(settings: Settings) -> str:
    """The configured database, or else the one a running `leadgate dev` announced."""
    if settings.database_url:
        return settings.database_url
    announced = settings.data_dir / "urls.json"
    if announced.is_file():
        url: str = orjson.loads(announced.read_bytes())["database_url"]
        return url
    raise click.UsageError(
        "LEADGATE_DATABASE_URL is not set (and no `leadgate dev` is running in "
        f"{settings.data_dir}); set it, e.g. postgresql://postgres@127.0.0.1:5432/leadgate"
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


@main.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Apply schema.sql (idempotent)."""
    url = database_url(_settings(ctx))
    _run(db.migrate(url))
    console.print("[green]schema is up to date[/green]")


@main.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the HTTP gateway."""
    from gateway.server import serve as run_server

    settings = _settings(ctx)
    if not settings.redis_url:
        raise click.UsageError("LEADGATE_REDIS_URL is not set, e.g. redis://127.0.0.1:6379/0")
    run_server(settings.model_copy(update={"database_url": database_url(settings)}))


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
    as_json: bool,
) -> None:
    try:
        row = await update_tenant(
            conn,
            tenant_id,
            name=name,
            stages=_stage_option(stages, "--stages"),
            exit_stages=() if exit_stages == "" else _stage_option(exit_stages, "--exit-stages"),
            match_phone=match_phone,
            rate_limit=rate_limit,
        )
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--stages/--exit-stages") from e
    if row is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    if as_json:
        emit_json(tenant_json(row))
    else:
        console.print(f"updated tenant [bold]{row['id']}[/bold]")


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
@click.option("--json", "as_json", is_flag=True, help="Print {id, key} as JSON.")
@with_connection
async def keys_create(conn: asyncpg.Connection, tenant_id: str, scopes: str, as_json: bool) -> None:
    scope_list = _parse_scopes(scopes)
    try:
        row, key = await create_key(conn, tenant_id, scope_list)
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


async def find_or_create_tenant(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    return await conn.fetchrow(FIND_TENANT_BY_NAME, name) or await create_tenant(conn, name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
