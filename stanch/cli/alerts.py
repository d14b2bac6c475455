"""``stanch alert send`` and ``stanch alerts dead-letter``: alerts by hand, for demos and
on-call, and the deliveries Stanch kept because it could not read them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer

from stanch.cli._app import app

alerts_app = typer.Typer(help="Send alerts; inspect dead letters.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")
app.add_typer(alerts_app, name="alert", hidden=True)  # `stanch alert send` reads naturally

_MODES = ("open", "standard_webhooks", "github", "bearer", "url_token", "hmac")


@alerts_app.command("send")
def send(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="Payload file, sent byte for byte.")],
    source: Annotated[str, typer.Option("--source", "-s", help="Alert source, e.g. splunk.")],
    url: Annotated[str | None, typer.Option(
        "--url", envvar="STANCH_API_URL", help="API base URL (default: settings api).")] = None,
    secret_env: Annotated[str | None, typer.Option(
        "--secret-env", help="Environment variable holding the signing secret/token "
                             "(default: the source's first configured secret, else the "
                             "local stack's .stanch/source-token).")] = None,
    mode: Annotated[str | None, typer.Option(
        "--mode", help=f"Signing mode, one of {', '.join(_MODES)} "
                       "(default: the source's configured mode).")] = None,
) -> None:
    """Sign FILE the way SOURCE would and POST it to /v1/alerts/SOURCE; print the answer."""
    from stanch.config import ConfigError, Settings, load_settings
    from stanch.ingest.signing import sign

    try:
        settings = load_settings()
    except ConfigError as err:
        if url is None or secret_env is None:
            _fail(f"{err}\n(or pass --url and --secret-env)", 2)
        settings = Settings.model_construct()
    conf = settings.sources.get(source)
    local = None if conf or secret_env else _local_stack(settings.state_dir, source)
    use_mode = mode or (conf.mode if conf else local[0] if local else "open")
    if use_mode not in _MODES:
        _fail(f"--mode must be one of {', '.join(_MODES)} (got {use_mode!r})", 2)
    secret: str | None = None
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            _fail(f"environment variable {secret_env} is not set", 2)
    elif conf and conf.secrets:
        secret = conf.secrets[0].get_secret_value()
    elif local is not None:
        secret = local[1]
    if use_mode != "open" and not secret:
        _fail(f"source {source} uses mode {use_mode}: configure sources.{source}.secrets "
              "or pass --secret-env VAR", 2)
    body = file.read_bytes()
    req = sign(use_mode, body, secret=secret, now=datetime.now(UTC),
               signature_header=conf.signature_header if conf else "X-Signature",
               timestamp_header=conf.timestamp_header if conf else None)
    base = (url or _default_url()).rstrip("/")
    try:
        resp = httpx.post(f"{base}/v1/alerts/{source}", content=body, headers=req.headers,
                          params=req.query, timeout=30.0)
    except httpx.HTTPError as err:
        _fail(f"could not reach {base}: {type(err).__name__}: {err}", 1)
    typer.echo(f"{resp.status_code} {resp.reason_phrase}")
    typer.echo(resp.text)
    if resp.status_code >= 400:
        raise typer.Exit(1)


@alerts_app.command("dead-letter")
def dead_letter(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Newest N.")] = 50,
    show: Annotated[str | None, typer.Option(
        "--show", help="Print one dead letter's headers and (redacted) body.")] = None,
) -> None:
    """List deliveries that authenticated but could not be normalized, newest first."""
    from stanch.config import ConfigError, load_settings
    from stanch.ingest.dead_letter import DeadLetterStore

    try:
        settings = load_settings()
    except ConfigError as err:
        _fail(str(err), 2)
    path = settings.state_dir / "dead_letter.db"
    if not path.exists():
        if as_json:
            return
        typer.echo(f"no dead letters ({path} does not exist)")
        return
    store = DeadLetterStore(path)
    try:
        if show:
            dl = store.get(show)
            if dl is None:
                _fail(f"no dead letter {show}", 1)
            typer.echo(json.dumps({**dl.summary(), "headers": dl.headers,
                                   "body": dl.body.decode("utf-8", "replace")}, indent=2))
            return
        letters = store.list(limit)
    finally:
        store.close()
    if as_json:
        for dl in letters:
            typer.echo(json.dumps(dl.summary()))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    typer.echo(f"{'ID':<24} {'SOURCE':<12} {'RECEIVED':<25} {'SIZE':>7}  REASON")
    for dl in letters:
        typer.echo(f"{dl.id:<24} {dl.source:<12} {dl.received_at.isoformat():<25} "
                   f"{len(dl.body):>7}  {dl.reason}")


def _local_stack(state_dir: Path, source: str) -> tuple[str, str] | None:
    """The source token `stanch up` generated (``<state_dir>/source-token``) and the mode it
    configured for the source, when no source is configured here: the local stack's
    settings live in its children's environment, not in this shell's."""
    try:
        token = (state_dir / "source-token").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return ("url_token" if source == "splunk" else "bearer", token) if token else None


def _default_url() -> str:
    from stanch.cli._client import default_api_url

    return default_api_url()


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
