"""`leadgate mappings …` and `leadgate templates preview`: sender mappings and payload templates."""

from __future__ import annotations

from typing import Any, TextIO

import asyncpg
import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from gateway import jsonio
from gateway.cli import console, emit_json, with_connection
from gateway.dialects import mappings as store
from gateway.dialects.models import MappingIn
from gateway.dialects.templates import SAMPLE_EVENT, TemplateError, check_template, render_value


def _refused(error: ValidationError) -> click.BadParameter:
    first = error.errors(include_url=False)[0]
    name = ".".join(str(p) for p in first["loc"]) or "mapping"
    return click.BadParameter(first["msg"], param_hint=name)


@click.group()
def mappings() -> None:
    """Sender mappings: JSONata from a sender's body to postback fields."""


@mappings.command("add")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("name")
@click.argument("file", type=click.File(encoding="utf-8"))
@click.option("--description")
@click.option("--replace", is_flag=True, help="Change the mapping if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the mapping as JSON.")
@with_connection
async def mappings_add(
    conn: asyncpg.Connection,
    tenant_id: str,
    name: str,
    file: TextIO,
    description: str | None,
    replace: bool,
    as_json: bool,
) -> None:
    """Add mapping NAME from FILE (a JSONata expression); postbacks use it by ?mapping=NAME."""
    try:
        spec = MappingIn(name=name, expression=file.read(), description=description)
    except ValidationError as e:
        raise _refused(e) from e
    try:
        row = await conn.fetchrow(
            store.CREATE_MAPPING, tenant_id, spec.name, spec.expression, spec.description
        )
    except asyncpg.ForeignKeyViolationError as e:
        raise click.ClickException(f"no tenant {tenant_id}") from e
    if row is None and replace:
        row = await conn.fetchrow(
            store.UPDATE_MAPPING, tenant_id, spec.name, spec.expression, True, spec.description
        )
    if row is None:
        raise click.ClickException(f"mapping {name!r} exists; pass --replace to change it")
    if as_json:
        emit_json(store.mapping_json(row))
    else:
        console.print(f"mapping [bold]{name}[/bold] saved: POST /v1/postback?mapping={name}")


@mappings.command("list")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def mappings_list(conn: asyncpg.Connection, tenant_id: str, as_json: bool) -> None:
    rows = [store.mapping_json(r) for r in await conn.fetch(store.LIST_MAPPINGS, tenant_id)]
    if as_json:
        emit_json(rows)
        return
    table = Table("name", "description", "updated")
    for r in rows:
        table.add_row(r["name"], r["description"] or "", r["updated_at"].isoformat("T", "seconds"))
    Console().print(table)


@mappings.command("remove")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("name")
@with_connection
async def mappings_remove(conn: asyncpg.Connection, tenant_id: str, name: str) -> None:
    """Delete mapping NAME; refused while an API key uses it by default."""
    if keys := await conn.fetch(store.KEYS_USING, tenant_id, name):
        ids = ", ".join(k["id"] for k in keys)
        raise click.ClickException(f"keys {ids} use mapping {name!r}; revoke them first")
    if await conn.fetchval(store.DELETE_MAPPING, tenant_id, name) is None:
        raise click.ClickException(f"tenant {tenant_id} has no mapping {name!r}")
    console.print(f"mapping [bold]{name}[/bold] deleted")


@click.group()
def templates() -> None:
    """Payload templates: JSONata from an event to a webhook body."""


@templates.command("preview")
@click.argument("file", type=click.File(encoding="utf-8"))
@click.option(
    "--event",
    "event_file",
    type=click.File(encoding="utf-8"),
    help="An event as JSON ({id, type, timestamp, data}); else a sample lead.created.",
)
def templates_preview(file: TextIO, event_file: TextIO | None) -> None:
    """Print the body the template in FILE makes of an event (no database needed)."""
    text = file.read()
    try:
        check_template(text)
        event: Any = jsonio.loads(event_file.read()) if event_file else SAMPLE_EVENT
        click.echo(render_value(event, text))
    except jsonio.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="--event") from e
    except (ValueError, TemplateError) as e:
        raise click.ClickException(str(e)) from e
