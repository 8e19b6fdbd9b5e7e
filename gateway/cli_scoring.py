"""`leadgate scoring set|show`: a tenant's scoring rules from a JSON file, and their rescore.

A rule set saved here is rescored by the gateways: each looks for due rescores every
LEADGATE_RESCORE_INTERVAL seconds, so with none running the leads keep their scores until one
starts.
"""

from __future__ import annotations

from typing import Any, TextIO

import asyncpg
import click
from rich.console import Console
from rich.table import Table

from gateway import jsonio
from gateway.cli import console, emit_json, with_connection
from gateway.errors import InvalidRules
from gateway.scoring.models import parse_scoring
from gateway.scoring.store import read_scoring, save_scoring


@click.group()
def scoring() -> None:
    """Lead scoring: rules (JSONata booleans worth points) and tiers."""


@scoring.command("set")
@click.argument("file", type=click.File(encoding="utf-8"))
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the saved rule set as JSON.")
@with_connection
async def scoring_set(
    conn: asyncpg.Connection, file: TextIO, tenant_id: str, as_json: bool
) -> None:
    """Replace the tenant's rules with FILE ({"rules": [...], "tiers": [...]}, as PUT
    /v1/scoring takes); the gateways then rescore every lead."""
    try:
        spec = parse_scoring(jsonio.loads(file.read()))
    except jsonio.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON: {e}", param_hint="FILE") from e
    except InvalidRules as e:
        name, reason = next(iter((e.fields or {"FILE": e.message}).items()))
        raise click.BadParameter(reason, param_hint=name) from e
    async with conn.transaction():
        saved = await save_scoring(conn, tenant_id, spec)
    if saved is None:
        raise click.ClickException(f"no tenant {tenant_id}")
    data, changed = saved
    if as_json:
        emit_json(data)
    elif changed:
        console.print(
            f"saved {len(spec.rules)} rules and {len(spec.tiers)} tiers (version "
            f"{data['version']}); the gateways rescore every lead in the background"
        )
    else:
        console.print("the rules are unchanged; nothing to rescore")


@scoring.command("show")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--json", "as_json", is_flag=True)
@with_connection
async def scoring_show(conn: asyncpg.Connection, tenant_id: str, as_json: bool) -> None:
    """Print the tenant's rules, tiers and the progress of their rescore."""
    data = await read_scoring(conn, tenant_id)
    if as_json:
        emit_json(data)
        return
    table = Table("rule", "points", "when")
    for rule in data["rules"]:
        table.add_row(rule["name"], str(rule["points"]), rule["when"])
    Console().print(table)
    tiers = ", ".join(f"{t['name']} ≥ {t['min']:g}" for t in data["tiers"]) or "none"
    console.print(f"tiers: {tiers}; version {data['version']}")
    console.print(_progress(data["rescore"]))


def _progress(rescore: dict[str, Any] | None) -> str:
    if rescore is None:
        return "rescore: none"
    total = rescore["total"] if rescore["total"] is not None else "?"
    return (
        f"rescore: {rescore['state']}, {rescore['done']} of {total} leads read, "
        f"{rescore['changed']} changed"
    )
