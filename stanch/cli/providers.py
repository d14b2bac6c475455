"""``stanch providers check [NAME]``: each provider read, verified and tried, before an
incident (activities/providers/checks.py says what is checked)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from stanch.cli._app import app
from stanch.cli._client import settings_or_exit
from stanch.config import Settings
from stanch.models import IdentityKind, IdentityRef

providers_app = typer.Typer(help="Configured identity providers.", no_args_is_help=True)
app.add_typer(providers_app, name="providers")



def _sample(settings: Settings, name: str, identity: str | None,
            kind: IdentityKind | None) -> IdentityRef | None:
    """The identity to read: the one named, else the provider's first in the inventory."""
    from stanch.inventory import InventoryError, load_inventory

    try:
        known = [c.ref for c in load_inventory(settings).all() if c.ref.provider == name]
    except InventoryError:
        known = []
    if identity is not None:
        found = next((r for r in known if r.id == identity), None)
        return found or IdentityRef(provider=name, id=identity,
                                    kind=kind or IdentityKind.user)
    return known[0] if known else None


@providers_app.command("check")
def check_cmd(
    name: Annotated[str | None, typer.Argument(help="Provider name; default: all.")] = None,
    identity: Annotated[str | None, typer.Option(
        help="Identity id to read (default: the provider's first in the inventory).")] = None,
    kind: Annotated[IdentityKind | None, typer.Option(
        help="Kind of --identity when it is not in the inventory.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Read one identity with the read credentials, check they see what verification
    needs, and report what the action credentials may do. Exit 1 on any failure."""
    from activities.providers.checks import Finding, check
    from activities.providers.registry import UnknownProvider, build_provider

    settings = settings_or_exit()
    names = [name] if name else sorted(settings.providers)
    if name and name not in settings.providers:
        typer.echo(f"provider {name!r} is not configured (configured: "
                   f"{', '.join(sorted(settings.providers)) or 'none'})", err=True)
        raise typer.Exit(2)

    async def run() -> list[Finding]:
        out: list[Finding] = []
        for n in names:
            ref = _sample(settings, n, identity, kind)
            if ref is None:
                out.append(Finding(n, "read", False, "no identity to read",
                                   "add one of its identities to the inventory, or pass "
                                   "--identity ID"))
                continue
            try:
                provider = build_provider(n, settings)
            except (UnknownProvider, Exception) as err:  # config errors name the setting
                out.append(Finding(n, "read", False, f"cannot build the adapter: {err}",
                                   f"check providers.{n}"))
                continue
            try:
                out += await check(n, settings, provider, ref)
            finally:
                await provider.aclose()
        return out

    findings = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for f in findings:
            typer.echo(str(f))
    if any(not f.ok for f in findings):
        raise typer.Exit(1)
