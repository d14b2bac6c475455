"""``stanch token create``: mint an API token. The plain token is printed once and stored
nowhere; the configuration keeps only its SHA-256 digest.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stanch.cli._app import app
from stanch.models import Role

token_app = typer.Typer(help="API tokens for people and integrations.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    principal: Annotated[str, typer.Argument(help="Who the token acts as (a principal id).")],
    role: Annotated[list[Role], typer.Option(
        "--role", help="Role to grant; repeat for several.")],
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="Group membership (approver groups); repeat for several.")] = None,
    identity_key: Annotated[list[str] | None, typer.Option(
        "--identity-key",
        help="`provider:id` of the principal's own identity (it cannot approve on itself).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print token and entry as JSON.")
                       ] = False,
) -> None:
    """Mint a token for PRINCIPAL and print the `[[api_tokens]]` entry that accepts it."""
    from stanch.api.auth import mint_token

    minted = mint_token(principal, roles=role, groups=group or [],
                        identity_keys=identity_key or [])
    if as_json:
        typer.echo(json.dumps({"token": minted.token,
                               "entry": minted.entry.model_dump(mode="json")}))
        return
    typer.echo("Token (shown only now; give it to its owner, who sets STANCH_TOKEN or")
    typer.echo("writes it to ~/.config/stanch/token):")
    typer.echo("")
    typer.echo(f"  {minted.token}")
    typer.echo("")
    typer.echo("Add this entry to stanch.toml (it holds only the token's SHA-256):")
    typer.echo("")
    typer.echo(minted.toml().rstrip("\n"))
