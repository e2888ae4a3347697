"""``govnode token``: API tokens for the JSON API (create, list, revoke).

They work on the node's database directly, running or not; a running node checks
tokens on every request, so a new or revoked token takes effect at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Coroutine

import click
from rich.table import Table

from node import api_tokens, operations
from node.api_tokens import TOKEN_ROLES, TokenError
from node.cli_node import DATA_OPTION, JSON_OPTION, _when, run_operation
from node.output import console, print_json


def register(main: click.Group) -> None:
    main.add_command(token)


def _run(coroutine: Coroutine) -> Any:
    try:
        return run_operation(coroutine)
    except TokenError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def token() -> None:
    """API tokens: `Authorization: Bearer TOKEN` on the node's JSON API (/api/...)."""


@token.command("create")
@DATA_OPTION
@click.option("--name", required=True, help="Who or what uses the token, e.g. oa-system.")
@click.option("--role", required=True, type=click.Choice([r.value for r in TOKEN_ROLES]),
              help="The workflow role the token acts with.")
@JSON_OPTION
def token_create(data_dir: Path, name: str, role: str, as_json: bool) -> None:
    """Create a token; it is printed once and only its SHA-256 is kept."""
    async def go() -> str:
        async with operations.open_node(data_dir) as node:
            return await api_tokens.create_token(node.db, name, role)

    secret = _run(go())
    if as_json:
        print_json({"name": name.strip(), "role": role, "token": secret})
        return
    console.print(f"token [bold]{name.strip()}[/bold] ({role}) — shown only this once:")
    click.echo(secret)


@token.command("list")
@DATA_OPTION
@JSON_OPTION
def token_list(data_dir: Path, as_json: bool) -> None:
    """Tokens by name and role (the tokens themselves are not kept)."""
    async def go() -> list[dict[str, Any]]:
        async with operations.open_node(data_dir) as node:
            return [{"name": row.name, "role": row.role, "created_at": row.created_at}
                    for row in await api_tokens.list_tokens(node.db)]

    rows = _run(go())
    table = Table(title=f"API tokens ({len(rows)})")
    for column in ("name", "role", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["role"], _when(row["created_at"]))
    console.print(table)
    if as_json:
        print_json({"tokens": rows})


@token.command("revoke")
@DATA_OPTION
@click.argument("name")
@JSON_OPTION
def token_revoke(data_dir: Path, name: str, as_json: bool) -> None:
    """Revoke the token called NAME; requests with it are refused from now on."""
    async def go() -> None:
        async with operations.open_node(data_dir) as node:
            await api_tokens.revoke_token(node.db, name)

    _run(go())
    console.print(f"revoked token {name.strip()}")
    if as_json:
        print_json({"name": name.strip(), "revoked": True})
