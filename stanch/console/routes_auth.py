"""Signing in and out: OIDC (authorization code + PKCE) and the one-time local link."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stanch.api.auth import Authenticator
from stanch.config import Settings
from stanch.console.oidc import OidcClient, SignInError
from stanch.console.render import page
from stanch.console.security import (
    COOKIE,
    OIDC_COOKIE,
    PREFIX,
    checked_form,
    cookie_secure,
    sessions,
    set_session_cookie,
)
from stanch.console.sessions import SESSION_SECONDS, consume_login_link
from stanch.logging import get_logger
from stanch.models import Principal, Role

router = APIRouter(prefix=PREFIX, include_in_schema=False)
log = get_logger("stanch.console")


def _oidc(request: Request) -> OidcClient:
    client: OidcClient = request.app.state.console_oidc
    return client


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request) -> HTMLResponse:
    return page(request, "login.html", None, oidc=_oidc(request).enabled)


@router.get("/auth/start")
async def auth_start(request: Request) -> Response:
    oidc = _oidc(request)
    if not oidc.enabled:
        return page(request, "login.html", None, oidc=False, status=404,
                    error="single sign-on is not configured (oidc.issuer, oidc.client_id)")
    try:
        url, state = await oidc.begin(_redirect_uri(request))
    except SignInError as err:
        return page(request, "login.html", None, oidc=True, status=502, error=str(err))
    resp = RedirectResponse(url, status_code=302)
    # Lax, not Strict: it must come back on the issuer's cross-site redirect to us.
    resp.set_cookie(OIDC_COOKIE, state, max_age=600, path=f"{PREFIX}/auth", httponly=True,
                    samesite="lax", secure=cookie_secure(request))
    return resp


@router.get("/auth/callback")
async def auth_callback(request: Request, code: str = "", state: str = "",
                        error: str = "") -> Response:
    bound = request.cookies.get(OIDC_COOKIE, "")
    if error or not code or not state or not secrets.compare_digest(bound, state):
        why = f"the identity provider said: {error[:100]}" if error else \
            "this sign-in was not started from this browser: start again"
        return page(request, "login.html", None, oidc=True, status=400, error=why)
    try:
        principal = await _oidc(request).finish(code=code, state=state)
    except SignInError as err:
        return page(request, "login.html", None, oidc=True, status=400, error=str(err))
    resp = _signed_in(request, principal, via="oidc")
    resp.delete_cookie(OIDC_COOKIE, path=f"{PREFIX}/auth")
    return resp


@router.get("/login/link", response_class=HTMLResponse)
async def link_page(request: Request, token: str = "") -> HTMLResponse:
    """Shows a button; only its POST spends the link (so a link preview does not)."""
    return page(request, "link.html", None, token=token)


@router.post("/login/link")
async def link_exchange(request: Request) -> Response:
    form = await request.form()
    token = form.get("token")
    settings: Settings = request.app.state.settings
    pid = consume_login_link(settings.state_dir, token if isinstance(token, str) else "")
    if pid is None:
        return page(request, "login.html", None, oidc=_oidc(request).enabled, status=400,
                    error="this sign-in link is unknown, used or older than 10 minutes: "
                          "`stanch console-link` prints a new one")
    return _signed_in(request, principal_by_id(request, pid), via="link")


@router.post("/logout")
async def logout(request: Request) -> Response:
    await checked_form(request)
    sessions(request).end(request.cookies.get(COOKIE))
    resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
    resp.delete_cookie(COOKIE, path=PREFIX)
    return resp


def principal_by_id(request: Request, pid: str) -> Principal:
    """The principal a local link names, with the roles and groups of its API token."""
    settings: Settings = request.app.state.settings
    authenticator: Authenticator = request.app.state.authenticator
    groups: list[str] = []
    roles: list[Role] = []
    keys: list[str] = []
    for tok in settings.api_tokens:
        if tok.principal == pid:
            groups += tok.groups
            roles += [Role(r) for r in tok.roles]
            keys += tok.identity_keys
    return authenticator.principal_for(pid, groups=groups, roles=roles, identity_keys=keys)


def _signed_in(request: Request, principal: Principal, *, via: str) -> Response:
    sid, _ = sessions(request).create(principal, via)
    log.info("console.signed_in", principal=principal.id, via=via)
    # A page of our own, not a redirect: after the issuer's cross-site redirect, only a
    # navigation started here carries the SameSite=Strict cookie.
    resp = page(request, "signed_in.html", None, who=principal.id)
    set_session_cookie(resp, request, sid, SESSION_SECONDS)
    return resp


def _redirect_uri(request: Request) -> str:
    settings: Settings = request.app.state.settings
    if settings.oidc.redirect_url:
        return settings.oidc.redirect_url
    return str(request.url_for("auth_callback"))
