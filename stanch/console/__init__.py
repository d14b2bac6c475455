"""The console: server-rendered pages for approvers and on-call, under ``/ui/``.

It runs inside the API process and acts only through the API's own functions (the Decider,
the containment and elevation route handlers, the audit store): never a second path to a
workflow. See docs/console.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from stanch.console.cache import StatusCache
from stanch.console.oidc import OidcClient
from stanch.console.security import PREFIX, SecurityHeaders, SignInRequired
from stanch.console.session_db import open_sessions
from stanch.console.sessions import mint_login_link

HERE = Path(__file__).resolve().parent

__all__ = ["mint_login_link", "mount"]


def mount(app: FastAPI) -> None:
    """Add the console's routes, static files and state to the API app."""
    from stanch.console import routes_actions, routes_auth, routes_pages

    app.state.console_sessions = open_sessions(app.state.settings)
    app.state.console_cache = StatusCache(app.state.audit)
    app.state.console_oidc = OidcClient(app.state.settings.oidc, app.state.authenticator,
                                        parking=app.state.console_sessions)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(routes_auth.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_actions.router)
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(SignInRequired, _to_sign_in)


async def _to_sign_in(request: Request, exc: Exception) -> Response:
    if request.headers.get("hx-request"):  # a poll from a page whose session ended
        return Response(status_code=204, headers={"HX-Redirect": f"{PREFIX}/login"})
    return RedirectResponse(f"{PREFIX}/login", status_code=303)
