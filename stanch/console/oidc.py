"""Sign-in with OpenID Connect: the authorization-code flow with PKCE (RFC 7636).

The console is a confidential client when ``oidc.client_secret`` is set, a public one
otherwise; either way it sends a S256 code challenge and a nonce. The ID token is checked
against the issuer's published keys (signature, ``iss``, ``aud`` = client id, ``exp``,
``nonce``); the person is its ``sub``, with groups and roles from the configured claims,
plus what ``settings.principals`` adds, exactly as the API does for bearer JWTs.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import jwt

from stanch.api.auth import Authenticator, _claim_strings
from stanch.config import OidcSettings
from stanch.models import Principal, Role

_PENDING_SECONDS = 600
_ALGORITHMS = ["RS256", "ES256"]


class SignInError(Exception):
    """Sign-in did not complete; the message is safe to show the person."""


class Parking(Protocol):
    """Where a sign-in waits between its start and its callback (the session store)."""

    def park(self, state: str, data: dict[str, Any], ttl: float) -> None: ...
    def claim(self, state: str) -> dict[str, Any] | None: ...


@dataclass
class _Pending:
    verifier: str
    nonce: str
    redirect_uri: str
    created: float


class OidcClient:
    def __init__(self, oidc: OidcSettings, authenticator: Authenticator,
                 timeout: float = 10.0, *, parking: Parking | None = None) -> None:
        self._oidc = oidc
        self._authenticator = authenticator
        self._timeout = timeout
        self._meta: dict[str, Any] | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._parking = parking  # shared by every API process, when given

    @property
    def enabled(self) -> bool:
        return bool(self._oidc.issuer and self._oidc.client_id)

    async def begin(self, redirect_uri: str) -> tuple[str, str]:
        """(the issuer's authorization URL to send the browser to, the state to bind)."""
        meta = await self._metadata()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        self._put(state, _Pending(verifier, nonce, redirect_uri, time.time()))
        query = urlencode({
            "response_type": "code", "client_id": self._oidc.client_id,
            "redirect_uri": redirect_uri, "scope": self._oidc.scopes, "state": state,
            "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"})
        return f"{meta['authorization_endpoint']}?{query}", state

    def _put(self, state: str, pending: _Pending) -> None:
        if self._parking is not None:
            self._parking.park(state, asdict(pending), _PENDING_SECONDS)
            return
        with self._lock:
            for key in [k for k, p in self._pending.items()
                        if pending.created - p.created > _PENDING_SECONDS]:
                del self._pending[key]
            self._pending[state] = pending

    def _take(self, state: str) -> _Pending | None:
        if self._parking is not None:
            data = self._parking.claim(state)
            return _Pending(**data) if data else None
        with self._lock:
            return self._pending.pop(state, None)

    async def finish(self, *, code: str, state: str) -> Principal:
        pending = self._take(state)
        if pending is None or time.time() - pending.created > _PENDING_SECONDS:
            raise SignInError("this sign-in attempt is unknown or older than 10 minutes: "
                              "start again")
        meta = await self._metadata()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "code_verifier": pending.verifier,
                "client_id": self._oidc.client_id or ""}
        auth: httpx.BasicAuth | None = None
        if self._oidc.client_secret is not None:
            auth = httpx.BasicAuth(self._oidc.client_id or "",
                                   self._oidc.client_secret.get_secret_value())
        async with httpx.AsyncClient(timeout=self._timeout) as http:
            try:
                resp = await http.post(meta["token_endpoint"], data=form,
                                       auth=auth or httpx.USE_CLIENT_DEFAULT)
                tokens = resp.json() if resp.status_code == 200 else None
                keys = (await http.get(meta["jwks_uri"])).json()
            except (httpx.HTTPError, ValueError):
                raise SignInError("the identity provider did not answer: try again") from None
            if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
                raise SignInError(f"the identity provider refused the code "
                                  f"(HTTP {resp.status_code}): start again")
            claims = self._verify(tokens["id_token"], keys, pending.nonce)
            if _missing(claims, self._oidc) and meta.get("userinfo_endpoint") and \
                    isinstance(tokens.get("access_token"), str):
                claims = await self._userinfo(http, meta["userinfo_endpoint"],
                                              tokens["access_token"], claims)
        groups = _claim_strings(claims, self._oidc.groups_claim)
        roles = [Role(r) for r in _claim_strings(claims, self._oidc.roles_claim)
                 if r in Role._value2member_map_]
        return self._authenticator.principal_for(claims["sub"], groups=groups, roles=roles)

    def _verify(self, id_token: str, keys: Any, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
            jwks = jwt.PyJWKSet.from_dict(keys)
            key = next((k for k in jwks.keys
                        if header.get("kid") in (None, k.key_id)), None)
            if key is None:
                raise SignInError("the ID token is signed with a key the issuer does not "
                                  "publish")
            claims: dict[str, Any] = jwt.decode(
                id_token, key.key, algorithms=_ALGORITHMS, audience=self._oidc.client_id,
                issuer=self._oidc.issuer, leeway=self._oidc.leeway_seconds,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        except (jwt.PyJWTError, jwt.PyJWKSetError, ValueError) as err:
            raise SignInError(f"the ID token was not accepted ({type(err).__name__})") from None
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInError("the ID token does not answer this sign-in (nonce): start again")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise SignInError("the ID token names nobody (no sub)")
        return claims

    async def _userinfo(self, http: httpx.AsyncClient, url: str, access_token: str,
                        claims: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = await http.get(url, headers={"Authorization": f"Bearer {access_token}"})
            info = resp.json() if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return claims
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            return claims
        return {**info, **claims}  # the signed token wins where both speak

    async def _metadata(self) -> dict[str, Any]:
        if self._meta is None:
            issuer = (self._oidc.issuer or "").rstrip("/")
            try:
                async with httpx.AsyncClient(timeout=self._timeout) as http:
                    resp = await http.get(f"{issuer}/.well-known/openid-configuration")
                    resp.raise_for_status()
                    meta = resp.json()
            except (httpx.HTTPError, ValueError):
                raise SignInError(f"the identity provider at {issuer} did not answer its "
                                  "discovery document: try again later") from None
            needed = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(meta, dict) or any(not isinstance(meta.get(k), str)
                                                 for k in needed):
                raise SignInError(f"the discovery document of {issuer} lacks "
                                  f"{', '.join(needed)}")
            self._meta = meta
        return self._meta


def _missing(claims: dict[str, Any], oidc: OidcSettings) -> bool:
    return not _claim_strings(claims, oidc.groups_claim) and \
        not _claim_strings(claims, oidc.roles_claim)
