"""Elevation commands: ``elevate``, ``elevations``, ``elevation show|approve|deny|extend|revoke``.

Like every on-call command they go through the API, which authenticates the caller and
starts or updates the ``ElevationWorkflow``.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from stanch.cli._app import app
from stanch.cli._client import ApiOption, JsonOption, call, table_console

elevation_app = typer.Typer(help="One elevation: show, approve, deny, extend, revoke.",
                            no_args_is_help=True)
app.add_typer(elevation_app, name="elevation")

_BASE = "/v1/elevations"


def _path(workflow_id: str, *rest: str) -> str:
    return "/".join([_BASE, quote(workflow_id, safe=""), *rest])


def _console() -> Console:
    return table_console()


@app.command()
def elevate(
    principal: Annotated[str, typer.Argument(help="Who gets it: `provider:id` or an alias.")],
    scope: Annotated[list[str], typer.Option("--scope", "-s",
                                             help="A scope to grant; repeat for several.")],
    duration: Annotated[str, typer.Option("--for", help="How long, e.g. 30m, 2h.")],
    reason: Annotated[str, typer.Option(help="Why: required, audited.")],
    ticket: Annotated[str | None, typer.Option(help="Incident or change ticket.")] = None,
    break_glass: Annotated[bool, typer.Option(
        "--break-glass", help="Grant now, review after (where the policy allows).")] = False,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """Request a time-bound elevation; approvers are asked, it always expires."""
    data = call(api, "POST", _BASE, {"principal": principal, "scopes": scope,
                                     "duration": duration, "reason": reason, "ticket": ticket,
                                     "break_glass": break_glass}, as_json=as_json)
    if not as_json:
        policies = data.get("policies", {})
        groups = sorted({g for p in policies.values() for g in p.get("groups", [])})
        typer.echo(f"{data['workflow_id']}: {data['principal']} ← {', '.join(data['scopes'])}"
                   + (" (break-glass)" if data.get("break_glass") else
                      f"; waiting for {', '.join(groups)}"))


@app.command()
def elevations(
    limit: Annotated[int, typer.Option(help="List at most this many.")] = 50,
    api: ApiOption = None,
    as_json: JsonOption = False,
) -> None:
    """List elevations: who, what, state, until when."""
    data = call(api, "GET", _BASE, params={"limit": limit}, as_json=as_json)
    if as_json:
        return
    items = data.get("elevations", [])
    console = _console()
    if not items:
        console.print("No elevations.")
        return
    table = Table(title="Elevations")
    for col in ("workflow id", "principal", "scopes", "state", "expires", "requested by"):
        table.add_column(col, overflow="fold")
    for e in items:
        table.add_row(e["workflow_id"], e.get("principal") or "?",
                      ", ".join(e.get("scopes") or []), e.get("state") or e.get("run_status") or "",
                      e.get("expires_at") or "", e.get("requested_by") or "")
    console.print(table)


@elevation_app.command("show")
def show(workflow_id: Annotated[str, typer.Argument(metavar="ID")],
         api: ApiOption = None, as_json: JsonOption = False) -> None:
    """One elevation: scopes, state, expiry and cap, approvals, leases, review."""
    data = call(api, "GET", _path(workflow_id), as_json=as_json)
    if not as_json:
        _print(data)


def _print(d: dict[str, Any]) -> None:
    console = _console()
    console.print(f"{d['workflow_id']}  {d['principal']} ← {', '.join(d['scopes'])}  "
                  f"[{d['state']}]")
    console.print(f"requested by {d['requested_by']}: {d['reason']}"
                  + (f" ({d['ticket']})" if d.get("ticket") else ""))
    for key in ("granted_at", "expires_at", "cap_at", "ended_at"):
        if d.get(key):
            console.print(f"  {key.replace('_', ' ')}: {d[key]}")
    if d.get("pending"):
        p = d["pending"]
        for a in p["approvals"]:
            console.print(f"  waiting ({p['kind']}): {a['policy']} {a['approvals']}/"
                          f"{a['quorum']} from {', '.join(a['groups'])}")
    for lease in d.get("leases", []):
        note = "held before Stanch" if lease.get("preexisting") else (
            "removed" if lease.get("removed") else "")
        console.print(f"  scope {lease['scope']}: {note}".rstrip(": "))
    if d.get("review"):
        r = d["review"]
        console.print(f"  review: {r['count']} audited action(s) by {', '.join(r['actors'])}")


def _decide(workflow_id: str, verdict: str, comment: str, api: str | None,
            as_json: bool) -> None:
    data = call(api, "POST", _path(workflow_id, "decisions"),
                {"verdict": verdict, "comment": comment}, as_json=as_json)
    if not as_json:
        typer.echo(f"{workflow_id}: {verdict} recorded; {data['round']} round "
                   f"{data['outcome']}; state {data['state']}")


@elevation_app.command("approve")
def approve(workflow_id: Annotated[str, typer.Argument(metavar="ID")],
            comment: Annotated[str, typer.Option(help="Why; recorded with the vote.")] = "",
            api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Approve a pending elevation (or extension)."""
    _decide(workflow_id, "approve", comment, api, as_json)


@elevation_app.command("deny")
def deny(workflow_id: Annotated[str, typer.Argument(metavar="ID")],
         comment: Annotated[str, typer.Option(help="Why; recorded with the vote.")] = "",
         api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Deny a pending elevation (or extension)."""
    _decide(workflow_id, "deny", comment, api, as_json)


@elevation_app.command("extend")
def extend(workflow_id: Annotated[str, typer.Argument(metavar="ID")],
           duration: Annotated[str, typer.Option("--for", help="How much longer, e.g. 30m.")],
           reason: Annotated[str, typer.Option(help="Why: required, audited.")],
           api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Ask for more time; approvers decide again, the policy maximum caps it."""
    data = call(api, "POST", _path(workflow_id, "extend"),
                {"duration": duration, "reason": reason}, as_json=as_json)
    if not as_json:
        typer.echo(f"{workflow_id}: extension to {data['requested_until']} waiting for approval"
                   + (" (capped by the policy maximum)" if data.get("capped") else ""))


@elevation_app.command("revoke")
def revoke(workflow_id: Annotated[str, typer.Argument(metavar="ID")],
           reason: Annotated[str, typer.Option(help="Why: required, audited.")] = "revoked "
           "from the CLI",
           api: ApiOption = None, as_json: JsonOption = False) -> None:
    """End an elevation now: scopes and sessions are revoked, the review is sent."""
    data = call(api, "POST", _path(workflow_id, "revoke"), {"reason": reason}, as_json=as_json)
    if not as_json:
        removed = [x["scope"] for x in data.get("leases", []) if x.get("removed")]
        typer.echo(f"{workflow_id}: {data['state']}; removed {', '.join(removed) or 'nothing'}")
