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
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.responses import Response

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


async def security_headers(request: Request,
                           call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    if request.url.path.startswith(PREFIX):
        spent = (time.perf_counter() - started) * 1000
        response.headers["Server-Timing"] = f"app;dur={spent:.1f}"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
    return response
