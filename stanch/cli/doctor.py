"""``stanch doctor``: configuration, inventory and playbooks checked together, no calls out."""

from __future__ import annotations

import json

import typer

from stanch.cli._app import app
from stanch.cli._client import settings_or_exit
from stanch.config import Settings


def require_healthy(settings: Settings, command: str) -> None:
    """Run at the start of ``up``, ``worker`` and ``api``: stop on any problem."""
    from stanch.doctor import diagnose

    problems = diagnose(settings)
    if problems:
        for p in problems:
            typer.echo(str(p), err=True)
        typer.echo(f"stanch {command}: {len(problems)} problem(s) found by `stanch doctor`; "
                   "fix them and start again", err=True)
        raise typer.Exit(2)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")
           ) -> None:
    """Check settings, inventory and playbooks fit together: one line per problem with the
    file, the setting and the fix; exit 1 on any. Calls no provider (see `providers check`)."""
    from stanch.doctor import diagnose

    problems = diagnose(settings_or_exit())
    if as_json:
        typer.echo(json.dumps({"ok": not problems, "problems": [
            {"where": p.where, "setting": p.setting, "message": p.message, "fix": p.fix}
            for p in problems]}, indent=2))
    else:
        for p in problems:
            typer.echo(str(p))
        if not problems:
            typer.echo("ok: providers, inventory and playbooks fit together", err=True)
    if problems:
        raise typer.Exit(1)
