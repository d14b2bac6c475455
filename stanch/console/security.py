"""Who is looking at the console, and the guards every page and form gets.

- the session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) names a server-side
  session; without one a page redirects to sign-in;
- every POST carries the session's CSRF token in a form field; without it (or with
  another) the request is refused with 403 before anything runs;
- every console response carries a Content-Security-Policy that allows no inline script,
  no framing and forms only to ourselves.
"""

from __future__ import annotations

import hmac
import time

from fastapi import HTTPException, Request
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stanch.api.auth import has_role
from stanch.console.session_db import SessionStore
from stanch.console.sessions import Session
from stanch.models import Role

COOKIE = "stanch_session"
OIDC_COOKIE = "stanch_oidc"
PREFIX = "/ui"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


class SignInRequired(Exception):
    """No valid session: the page handler turns this into a redirect to sign-in."""


def sessions(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.console_sessions
    return store


def current(request: Request) -> Session:
    session = sessions(request).get(request.cookies.get(COOKIE))
    if session is None:
        raise SignInRequired
    request.state.principal = session.principal
    return session


async def checked_form(request: Request) -> tuple[Session, dict[str, str]]:
    """The session and the posted form, after the CSRF check (403 when it fails)."""
    session = current(request)
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    token = fields.pop("csrf", "")
    if not token or not hmac.compare_digest(token.encode(), session.csrf.encode()):
        raise HTTPException(403, "this form has no valid CSRF token: reload the page and "
                                 "submit it again")
    return session, fields


def can(session: Session, role: Role) -> bool:
    return has_role(session.principal, role)


def cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, sid: str, max_age: int) -> None:
    response.set_cookie(COOKIE, sid, max_age=max_age, path=PREFIX, httponly=True,
                        samesite="strict", secure=cookie_secure(request))


class SecurityHeaders:
    """Console responses get the CSP and friends; every other request passes straight
    through. A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (what
    ``@app.middleware("http")`` builds) wraps *every* request in a task group and a memory
    stream, the alert webhooks included, and cost the API 9% of its CPU under load
    (docs/benchmarks.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                spent = (time.perf_counter() - started) * 1000
                headers["Server-Timing"] = f"app;dur={spent:.1f}"
                headers["Content-Security-Policy"] = CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
