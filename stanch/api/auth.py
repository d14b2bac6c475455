"""Who is calling: bearer tokens and OIDC JWTs become a :class:`~stanch.models.Principal`.

Two kinds of credential arrive as ``Authorization: Bearer …``:

- an API token, configured as its SHA-256 hex digest in ``api_tokens`` (the plain token is
  shown once, when minted, and never stored);
- an OIDC JWT (RS256/ES256) verified against a JWKS from ``oidc.jwks_file`` or
  ``oidc.jwks_url``; issuer, audience, ``exp``/``nbf`` (with leeway) are checked. Its
  principal id is the ``sub`` claim: ``preferred_username`` and ``email`` can be
  reassigned or edited by users in many IdPs, ``sub`` cannot.

Either way, ``settings.principals[principal_id]`` adds groups, roles and identity keys.

Roles nest: ``admin`` implies every role; ``responder`` and ``approver`` imply ``viewer``.
Failures raise :class:`AuthFailure` with a reason meant for the caller; the credential
itself is never echoed or logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import HTTPException, Request

from stanch.api.refusals import STATE_CHANGING, audit_refusal
from stanch.config import ApiToken, ConfigError, OidcSettings, PrincipalSettings, Settings
from stanch.logging import get_logger
from stanch.models import Principal, Role

log = get_logger(__name__)

ALGORITHMS = ("RS256", "ES256")
_KEY_TYPE = {"RS256": "RSA", "ES256": "EC"}
_ROLE_NAMES = frozenset(r.value for r in Role)

_IMPLIED: dict[Role, frozenset[Role]] = {
    Role.viewer: frozenset({Role.viewer}),
    Role.responder: frozenset({Role.responder, Role.viewer}),
    Role.approver: frozenset({Role.approver, Role.viewer}),
    Role.admin: frozenset(Role),
}


class AuthFailure(Exception):
    """The caller could not be authenticated. ``reason`` is safe to show the caller."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# --------------------------------------------------------------------------- roles


def effective_roles(roles: Iterable[Role]) -> frozenset[Role]:
    """Granted roles plus every role they imply."""
    out: set[Role] = set()
    for role in roles:
        out |= _IMPLIED[role]
    return frozenset(out)


def has_role(principal: Principal, role: Role) -> bool:
    return role in effective_roles(principal.roles)


# --------------------------------------------------------------------------- tokens


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token, as stored in ``api_tokens[].sha256``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class MintedToken:
    """A new API token: ``token`` is shown to the user once; ``entry`` goes in the config."""

    token: str
    entry: ApiToken

    def toml(self) -> str:
        """The entry as a ``[[api_tokens]]`` table for ``stanch.toml`` (no plain token)."""
        e = self.entry
        return (
            "[[api_tokens]]\n"
            f"sha256 = {json.dumps(e.sha256)}\n"
            f"principal = {json.dumps(e.principal)}\n"
            f"groups = {json.dumps(e.groups)}\n"
            f"roles = {json.dumps(e.roles)}\n"
            f"identity_keys = {json.dumps(e.identity_keys)}\n"
        )


def mint_token(
    principal: str,
    *,
    roles: Iterable[Role | str] = (),
    groups: Iterable[str] = (),
    identity_keys: Iterable[str] = (),
) -> MintedToken:
    """Create a random API token for ``principal`` and the config entry that accepts it."""
    role_names = [_parse_role(r, where="roles").value for r in roles]
    token = "stanch_" + secrets.token_urlsafe(32)
    entry = ApiToken(
        sha256=hash_token(token),
        principal=principal,
        groups=list(groups),
        roles=role_names,
        identity_keys=list(identity_keys),
    )
    return MintedToken(token=token, entry=entry)


def _parse_role(value: Role | str, *, where: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ConfigError(f"{where}: unknown role {value!r} (one of {allowed})") from None


def _merge(*lists: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)


# --------------------------------------------------------------------------- JWKS


class _Jwks:
    """Signing keys by ``kid``, from a file or a URL; refreshed when an unknown kid appears.

    A refetch on an unknown kid is what makes key rotation work without a restart; the
    ``min_refresh_seconds`` cooldown stops a caller from forcing a fetch per request with
    made-up kids.
    """

    def __init__(
        self,
        *,
        url: str | None,
        file: str | None,
        cache_seconds: float,
        min_refresh_seconds: float,
        timeout: float,
    ) -> None:
        self._url = url
        self._file = Path(file) if file else None
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._timeout = timeout
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at: float | None = None
        self._file_mtime: float | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        if self._loaded_at is None:
            await self._refresh(force=True)
        elif self._expired():
            try:
                await self._refresh(force=True)
            except AuthFailure:
                # The IdP being briefly unreachable should not lock everyone out: keep
                # trusting the keys we have until it answers again.
                log.warning("auth.jwks_stale", keys=len(self._keys), source=self._source())
                # Try again after the cooldown, not on every request.
                self._loaded_at = (
                    time.monotonic() - self._cache_seconds + self._min_refresh_seconds
                )
        found = self._find(kid, alg)
        if found is None:
            await self._refresh(force=False)
            found = self._find(kid, alg)
        if found is None:
            raise AuthFailure("unknown signing key")
        return found

    def _expired(self) -> bool:
        if self._file is not None:
            return self._file_changed()
        assert self._loaded_at is not None
        return time.monotonic() - self._loaded_at > self._cache_seconds

    def _file_changed(self) -> bool:
        assert self._file is not None
        try:
            return self._file.stat().st_mtime != self._file_mtime
        except OSError:
            return True

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        # No kid: acceptable only when exactly one key could have signed it.
        usable = [k for k in self._keys.values() if k.key_type == _KEY_TYPE[alg]]
        return usable[0] if len(usable) == 1 else None

    async def _refresh(self, *, force: bool) -> None:
        loaded_at = self._loaded_at
        async with self._lock:
            if self._loaded_at != loaded_at:
                return  # another request refreshed while we waited
            if (
                not force
                and self._loaded_at is not None
                and time.monotonic() - self._loaded_at < self._min_refresh_seconds
            ):
                return
            data = await self._fetch()
            self._keys = _parse_jwks(data)
            self._loaded_at = time.monotonic()
            log.info("auth.jwks_loaded", keys=len(self._keys), source=self._source())

    def _source(self) -> str:
        return "file" if self._file is not None else "url"

    async def _fetch(self) -> Any:
        if self._file is not None:
            try:
                self._file_mtime = self._file.stat().st_mtime
                return json.loads(self._file.read_text())
            except (OSError, ValueError) as exc:
                log.error("auth.jwks_unavailable", source="file", error=type(exc).__name__)
                raise AuthFailure("signing keys unavailable", status=503) from None
        assert self._url is not None
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                resp = await client.get(self._url, headers={"Accept": "application/json"})
                resp.raise_for_status()
                return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.error("auth.jwks_unavailable", source="url", error=type(exc).__name__)
            raise AuthFailure("signing keys unavailable", status=503) from None


def _parse_jwks(data: Any) -> dict[str | None, jwt.PyJWK]:
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise AuthFailure("signing keys unavailable", status=503)
    keys: dict[str | None, jwt.PyJWK] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK.from_dict(jwk)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue  # keys of types or algorithms we do not accept are skipped, not fatal
        keys[key.key_id] = key
    return keys


# --------------------------------------------------------------------------- authenticator


class Authenticator:
    """Turns an ``Authorization`` header into a :class:`Principal`, or raises AuthFailure."""

    def __init__(
        self,
        *,
        api_tokens: Iterable[ApiToken] = (),
        principals: dict[str, PrincipalSettings] | None = None,
        oidc: OidcSettings | None = None,
        jwks_cache_seconds: float = 300.0,
        jwks_min_refresh_seconds: float = 10.0,
        http_timeout: float = 5.0,
    ) -> None:
        self._tokens = [t.model_copy(update={"sha256": t.sha256.lower()}) for t in api_tokens]
        self._principals = dict(principals or {})
        for i, t in enumerate(self._tokens):
            for r in t.roles:
                _parse_role(r, where=f"setting api_tokens.{i}.roles")
        for pid, p in self._principals.items():
            for r in p.roles:
                _parse_role(r, where=f"setting principals.{pid}.roles")
        self._oidc = oidc
        self._jwks: _Jwks | None = None
        if oidc is not None and (oidc.jwks_file or oidc.jwks_url):
            if not oidc.issuer or not oidc.audience:
                raise ConfigError(
                    "setting oidc: issuer and audience are required when jwks_file or "
                    "jwks_url is set"
                )
            self._jwks = _Jwks(
                url=oidc.jwks_url,
                file=oidc.jwks_file,
                cache_seconds=jwks_cache_seconds,
                min_refresh_seconds=jwks_min_refresh_seconds,
                timeout=http_timeout,
            )

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Authenticator:
        return cls(
            api_tokens=settings.api_tokens,
            principals=settings.principals,
            oidc=settings.oidc,
            **options,
        )

    @property
    def oidc_enabled(self) -> bool:
        return self._jwks is not None

    async def authenticate(self, authorization_header: str | None) -> Principal:
        token = _bearer(authorization_header)
        if self._jwks is not None and _looks_like_jwt(token):
            return await self._from_jwt(token)
        return self._from_api_token(token)

    def principal_for(
        self,
        principal_id: str,
        *,
        groups: Iterable[str] = (),
        roles: Iterable[Role] = (),
        identity_keys: Iterable[str] = (),
    ) -> Principal:
        """Build a principal, adding what ``settings.principals`` knows about it."""
        extra = self._principals.get(principal_id)
        if extra is not None:
            groups = _merge(groups, extra.groups)
            roles = _merge(roles, (Role(r) for r in extra.roles))
            identity_keys = _merge(identity_keys, extra.identity_keys)
        return Principal(
            id=principal_id,
            groups=_merge(groups),
            roles=_merge(roles),
            identity_keys=_merge(identity_keys),
        )

    # ------------------------------------------------------------------ API tokens

    def _from_api_token(self, token: str) -> Principal:
        digest = hash_token(token)
        match: ApiToken | None = None
        # Compare against every entry so timing does not reveal which one matched.
        for entry in self._tokens:
            if hmac.compare_digest(digest, entry.sha256) and match is None:
                match = entry
        if match is None:
            raise AuthFailure("unknown token")
        return self.principal_for(
            match.principal,
            groups=match.groups,
            roles=[Role(r) for r in match.roles],
            identity_keys=match.identity_keys,
        )

    # ------------------------------------------------------------------ JWTs

    async def _from_jwt(self, token: str) -> Principal:
        assert self._jwks is not None and self._oidc is not None
        oidc = self._oidc
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthFailure("malformed token") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthFailure(f"unsupported token algorithm (accepted: {', '.join(ALGORITHMS)})")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthFailure("malformed token")
        key = await self._jwks.key(kid, alg)
        if key.key_type != _KEY_TYPE[alg] or (key.algorithm_name not in (alg, None)):
            raise AuthFailure("signing key does not match the token algorithm")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=oidc.audience,
                issuer=oidc.issuer,
                leeway=oidc.leeway_seconds,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("expired token") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("token not yet valid") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("bad signature") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise AuthFailure("malformed token") from None
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthFailure("token lacks the 'sub' claim")
        groups = _claim_strings(claims, oidc.groups_claim)
        roles = [Role(r) for r in _claim_strings(claims, oidc.roles_claim) if r in _ROLE_NAMES]
        return self.principal_for(sub, groups=groups, roles=roles)


def _bearer(header: str | None) -> str:
    if header is None or not header.strip():
        raise AuthFailure("missing token")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthFailure("unsupported authorization scheme (use Bearer)")
    token = token.strip()
    if not token:
        raise AuthFailure("missing token")
    return token


def _looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def _claim_strings(claims: dict[str, Any], path: str) -> list[str]:
    """A claim as a list of strings; ``path`` may be dotted (``realm_access.roles``)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return []
        value = value[part]
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


# --------------------------------------------------------------------------- FastAPI


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: ``principal = Depends(require(Role.approver))``.

    401 with ``WWW-Authenticate: Bearer`` when the credential is missing or invalid, 403
    when the principal lacks ``role``. Reads the Authenticator from
    ``request.app.state.authenticator``.
    """

    async def dependency(request: Request) -> Principal:
        authenticator: Authenticator = request.app.state.authenticator
        header = request.headers.get("authorization")
        try:
            principal = await authenticator.authenticate(header)
        except AuthFailure as exc:
            challenge = "Bearer" if exc.reason == "missing token" else (
                'Bearer error="invalid_token"'
            )
            log.info("auth.refused", reason=exc.reason, path=request.url.path)
            raise HTTPException(
                status_code=exc.status,
                detail=exc.reason,
                headers={"WWW-Authenticate": challenge} if exc.status == 401 else None,
            ) from None
        if not has_role(principal, role):
            log.info("auth.forbidden", principal=principal.id, role=role.value,
                     path=request.url.path)
            detail = f"principal {principal.id!r} lacks the {role.value!r} role"
            if request.method in STATE_CHANGING:
                await audit_refusal(request, principal, reason=detail, refusal="role",
                                    workflow_id=request.path_params.get("workflow_id"))
            raise HTTPException(status_code=403, detail=detail)
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency
