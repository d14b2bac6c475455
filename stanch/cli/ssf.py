"""``stanch ssf streams | connect | verify | pause | enable | rotate-key``: Shared Signals.

Stream commands go through the API (admin token): what Stanch transmits and to whom, with
SETs still waiting or refused; the streams Stanch receives, and their verification.
``rotate-key`` works on the state dir directly (run it where the API runs).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from stanch.cli._app import app
from stanch.cli._client import ApiOption, JsonOption, call, settings_or_exit

ssf_app = typer.Typer(help="Shared Signals (SSF/CAEP/RISC): streams in and out.",
                      no_args_is_help=True)
app.add_typer(ssf_app, name="ssf")
Name = Annotated[str, typer.Argument(help="The transmitter's name in ssf.transmitters.")]


@ssf_app.command("streams")
def streams(api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Streams Stanch transmits (queue: pending, delivered, acked, failed, refused) and
    streams it receives."""
    data = call(api, "GET", "/v1/ssf/overview", as_json=as_json)
    if as_json:
        return
    typer.echo(f"issuer {data['issuer']}")
    for s in data["transmitting"]:
        q = s["queue"]
        waiting = q.get("pending", 0) + q.get("failed", 0)
        line = (f"out {s['stream_id']}  {s['status']}  {s['delivery'].rsplit(':', 1)[-1]}  "
                f"owner {s['owner']}  waiting {waiting}  refused {q.get('refused', 0)}  "
                f"delivered {q.get('delivered', 0) + q.get('acked', 0)}")
        if s.get("last_error"):
            line += f"  last error: {s['last_error']}"
        typer.echo(line)
    for r in data["receiving"]:
        verified = "verified" if r["verified_at"] else "not verified"
        typer.echo(f"in  {r['name']}  {r['issuer']}  {r['delivery']}  "
                   f"stream {r['stream_id'] or '-'}  {r['status'] or '-'}  {verified}")


def _op(name: str, op: str, api: str | None, as_json: bool) -> None:
    data = call(api, "POST", f"/v1/ssf/transmitters/{name}/{op}", as_json=as_json)
    if not as_json:
        typer.echo(json.dumps(data, indent=2))


@ssf_app.command("connect")
def connect(name: Name, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Discover the transmitter, check its issuer, create (or re-read) Stanch's stream."""
    _op(name, "connect", api, as_json)


@ssf_app.command("verify")
def verify(name: Name, api: ApiOption = None, as_json: JsonOption = False) -> None:
    """Ask the transmitter for a verification event with a fresh random state."""
    _op(name, "verify", api, as_json)


@ssf_app.command("pause")
def pause(name: Name, api: ApiOption = None, as_json: JsonOption = False) -> None:
    _op(name, "pause", api, as_json)


@ssf_app.command("enable")
def enable(name: Name, api: ApiOption = None, as_json: JsonOption = False) -> None:
    _op(name, "enable", api, as_json)


@ssf_app.command("rotate-key")
def rotate_key() -> None:
    """New SET signing key; the old one stays in the JWKS for a week."""
    from stanch.ssf.keys import KeyStore

    kid = KeyStore(settings_or_exit().state_dir / "ssf" / "keys").rotate()
    typer.echo(f"signing with {kid}; the previous key stays published")
