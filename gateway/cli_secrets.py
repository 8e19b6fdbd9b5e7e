"""`leadgate secrets`: make a key for LEADGATE_SECRET_KEYS, and re-encrypt under the first key.

Rotating keys: put the new key first in LEADGATE_SECRET_KEYS and keep the old one after it
(every process then encrypts with the new key and still reads the old), run
`leadgate secrets rotate`, then drop the old key. See docs/SECURITY.md.
"""

from __future__ import annotations

import asyncio

import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from gateway import db
from gateway.crypto import Cipher, SecretKeysMissing, UndecryptableSecret, generate_key
from gateway.rekey import rekey, row_counts
from gateway.settings import Settings

console = Console(stderr=True)


@click.group("secrets")
def secrets_group() -> None:
    """Keys for secrets at rest (LEADGATE_SECRET_KEYS)."""


@secrets_group.command("new-key")
def new_key() -> None:
    """Print a new key for LEADGATE_SECRET_KEYS (32 random bytes, URL-safe base64)."""
    click.echo(generate_key())


@secrets_group.command("rotate")
@click.pass_context
def rotate(ctx: click.Context) -> None:
    """Re-encrypt every stored secret under the first key of LEADGATE_SECRET_KEYS."""
    # The DSN is found as every other command finds it (configured, or `leadgate dev`'s).
    from gateway.cli import database_url

    settings = ctx.find_object(Settings)
    assert settings is not None
    try:
        cipher = Cipher.from_settings(settings)
    except SecretKeysMissing as e:
        raise click.ClickException(str(e)) from e
    try:
        changed = asyncio.run(_rotate(database_url(settings), cipher))
    except UndecryptableSecret as e:
        raise click.ClickException(f"{e}; add that key to LEADGATE_SECRET_KEYS and retry") from e
    except (OSError, asyncpg.PostgresError) as e:
        raise click.ClickException(f"database error: {e}") from e
    summary = ", ".join(f"{table} {count}" for table, count in changed.items())
    console.print(f"[green]every secret is under key {cipher.primary_id}[/green] ({summary})")


async def _rotate(dsn: str, cipher: Cipher) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        await db.init_connection(conn)
        totals = await row_counts(conn)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as bar:
            tasks = {table: bar.add_task(table, total=total) for table, total in totals.items()}
            done = await rekey(
                conn,
                cipher,
                only_clear=False,
                progress=lambda table, rows: bar.advance(tasks[table], rows),
            )
        return done.changed
    finally:
        await conn.close()
