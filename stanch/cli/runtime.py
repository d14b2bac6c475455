"""Runtime commands: ``up`` (everything), ``worker``, ``api``, ``mock-idp`` (one part each)."""

from __future__ import annotations

import asyncio
import signal
import sys

import typer

from stanch.cli._app import app
from stanch.cli.doctor import require_healthy
from stanch.config import ConfigError, Settings, load_settings
from stanch.logging import configure_logging
from stanch.statedir import make_private


def _settings(doctor: str | None = None) -> Settings:
    try:
        settings = load_settings()
    except ConfigError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from None
    if doctor is not None:
        require_healthy(settings, doctor)  # before the incident, not during it
    configure_logging(settings.log_level, settings.log_format)
    make_private(settings.state_dir, set_umask=True)
    return settings


@app.command()
def up() -> None:
    """Start the Temporal dev server, worker, API and mock IdP; Ctrl-C stops them all."""
    settings = _settings("up")
    from stanch.runtime import up as run_up

    try:
        run_up(settings, out=typer.echo)
    except (RuntimeError, TimeoutError, FileNotFoundError) as err:
        typer.echo(f"stanch up failed: {err}", err=True)
        raise typer.Exit(1) from None


@app.command("console-link")
def console_link(principal: str = typer.Option(
        "dev-admin", help="Who signs in: a principal with an API token entry.")) -> None:
    """Print a one-time console sign-in link (single use, valid 10 minutes).

    Writes under the state directory the running API reads: run it where `stanch up` runs."""
    settings = _settings()
    from stanch.console.sessions import mint_login_link

    token = mint_login_link(settings.state_dir, principal)
    typer.echo(f"{settings.api.url}/ui/login/link?token={token}")


@app.command()
def worker() -> None:
    """Run the Temporal worker against an existing Temporal server."""
    settings = _settings("worker")
    from stanch.worker import run_worker

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())


@app.command()
def api() -> None:
    """Serve the HTTP API (webhooks, containments, decisions, audit)."""
    settings = _settings("api")
    import uvicorn

    from stanch.api.app import create_app

    try:
        application = create_app(settings)
    except Exception as err:
        typer.echo(f"stanch api: cannot start: {err}", err=True)
        raise typer.Exit(2) from None
    # SIEMs and load balancers keep connections open; a short keep-alive makes them race
    # the server's close on reuse.
    uvicorn.run(application, host=settings.api.host, port=settings.api.port,
                log_level="warning", access_log=False, timeout_keep_alive=30)


@app.command("mock-idp")
def mock_idp() -> None:
    """Serve the mock identity provider (real HTTP, state in SQLite)."""
    settings = _settings()
    from stanch.mock_idp.app import serve

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    serve(settings.mock_idp.host, settings.mock_idp.port, settings.mock_idp_db_path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
