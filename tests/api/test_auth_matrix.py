"""Every authenticated endpoint of the real app, served over a socket, against every caller.

The endpoints come from ``app.routes``, so a new endpoint is covered as soon as it is
mounted, and must be classified in ``MIN_ROLE`` or this module fails. Authentication runs
before anything reaches Temporal: the containment ids here name nothing, so a caller that
gets past auth sees 404/409/422/503, never 401 or 403.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.api.auth import hash_token
from stanch.config import ApiToken, OidcSettings, Settings
from stanch.models import Role
from tests.cli.server import serving

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://idp.matrix.test"
AUDIENCE = "stanch-matrix"

TOKENS = {role: f"tok-matrix-{role.value}-{uuid.uuid4().hex}" for role in Role}

# Endpoints that authenticate some other way, or not at all by design.
UNAUTHENTICATED = {
    ("POST", "/v1/alerts/{source}"),  # webhook signature per source
    ("POST", "/v1/integrations/slack/interactions"),  # Slack request signature
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/ssf/push/{name}"),  # SET signature (and the transmitter's push token)
    ("GET", "/.well-known/ssf-configuration"),  # SSF metadata is public
    ("GET", "/.well-known/ssf-configuration/{path:path}"),
    ("GET", "/v1/ssf/jwks.json"),
}

# The least role that may call each endpoint. A new endpoint must be added here.
MIN_ROLE: dict[tuple[str, str], Role] = {
    ("GET", "/metrics"): Role.viewer,
    ("GET", "/v1/containments"): Role.viewer,
    ("GET", "/v1/containments/{workflow_id}"): Role.viewer,
    ("POST", "/v1/containments"): Role.responder,
    ("POST", "/v1/containments/{workflow_id}/rollback"): Role.responder,
    ("POST", "/v1/containments/{workflow_id}/resolve"): Role.responder,
    ("POST", "/v1/containments/{workflow_id}/confirm"): Role.responder,
    ("POST", "/v1/containments/{workflow_id}/decisions"): Role.approver,
    ("POST", "/v1/containments/{workflow_id}/reviews/{review_id}/ack"): Role.approver,
    ("GET", "/v1/audit"): Role.viewer,
    ("GET", "/v1/audit/verify"): Role.viewer,
    ("GET", "/v1/elevations"): Role.viewer,
    ("GET", "/v1/elevations/{workflow_id}"): Role.viewer,
    # Any authenticated principal may ask to elevate *themself*, extend their own grant or
    # end it early; the handler checks who (responder for others, requester/approver/admin
    # for revoke). The route itself needs only a verified principal.
    ("POST", "/v1/elevations"): Role.viewer,
    ("POST", "/v1/elevations/{workflow_id}/extend"): Role.viewer,
    ("POST", "/v1/elevations/{workflow_id}/revoke"): Role.viewer,
    ("POST", "/v1/elevations/{workflow_id}/decisions"): Role.approver,
    # SSF transmitter endpoints: the group ssf.manage / ssf.read, or the admin role
    ("POST", "/v1/ssf/streams"): Role.admin,
    ("GET", "/v1/ssf/streams"): Role.admin,
    ("PATCH", "/v1/ssf/streams"): Role.admin,
    ("PUT", "/v1/ssf/streams"): Role.admin,
    ("DELETE", "/v1/ssf/streams"): Role.admin,
    ("GET", "/v1/ssf/status"): Role.admin,
    ("POST", "/v1/ssf/status"): Role.admin,
    ("POST", "/v1/ssf/verify"): Role.admin,
    ("POST", "/v1/ssf/subjects:add"): Role.admin,
    ("POST", "/v1/ssf/subjects:remove"): Role.admin,
    ("POST", "/v1/ssf/poll/{stream_id}"): Role.admin,
    ("POST", "/v1/ssf/transmitters/{name}/{op}"): Role.admin,
    ("GET", "/v1/ssf/overview"): Role.viewer,
}

# Bodies that get a sufficient caller past validation, so the handler itself runs.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/containments"): {"identity": "mock:no-such-identity", "level": "revoke",
                                   "reason": "auth matrix"},
    ("POST", "/v1/containments/{workflow_id}/rollback"): {"reason": "auth matrix"},
    ("POST", "/v1/containments/{workflow_id}/resolve"): {"verdict": "false_positive"},
    ("POST", "/v1/containments/{workflow_id}/confirm"): {"step": "s"},
    ("POST", "/v1/containments/{workflow_id}/decisions"): {"step": "s", "verdict": "approve"},
    ("POST", "/v1/containments/{workflow_id}/reviews/{review_id}/ack"): {"comment": "ok"},
}

PATH_VALUES = {
    "workflow_id": "containment-" + "0" * 24,
    "review_id": "review-0",
}
DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def endpoints(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route, through included routers at any depth."""
    out = []
    for route in _flat_routes(app):
        path = getattr(route, "path", None) or ""
        if path in DOCS or path.startswith("/ui"):
            continue  # the console signs in with a session cookie: tests/console/test_matrix
        methods = getattr(route, "methods", None)
        if not methods:  # a mount or websocket: it too must be classified
            out.append(("ANY", path))
            continue
        for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


def _flat_routes(app: FastAPI) -> list[Any]:
    # FastAPI ≥ 0.16x keeps included routers nested in app.routes; older ones flatten them.
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def _url_path(path: str) -> str:
    return path.format(**{k: PATH_VALUES.get(k, "x0") for k in _params(path)})


def _params(path: str) -> list[str]:
    return [p.split("}")[0].split(":")[0] for p in path.split("{")[1:]]


# --------------------------------------------------------------------------- keys, tokens


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwt(key: rsa.RSAPrivateKey, *, roles: list[str], exp_offset: int = 300,
         sub: str = "jwt-user") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now - 3600,
              "exp": now + exp_offset, "roles": roles}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "matrix-1"})


@pytest.fixture(scope="module")
def matrix_settings(tmp_path_factory: pytest.TempPathFactory,
                    rsa_key: rsa.RSAPrivateKey) -> Settings:
    tmp = tmp_path_factory.mktemp("auth-matrix")
    jwk: dict[str, Any] = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    jwk.update(kid="matrix-1", use="sig", alg="RS256")
    jwks = tmp / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return Settings(
        state_dir=tmp / "state",
        playbooks_dir=REPO / "playbooks",
        inventory_paths=[REPO / "inventory"],
        api_tokens=[ApiToken(sha256=hash_token(tok), principal=f"matrix-{role.value}",
                             groups=["soc-approvers"], roles=[role.value])
                    for role, tok in TOKENS.items()],
        oidc=OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(jwks)),
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture()
def app(matrix_settings: Settings, ts_env: WorkflowEnvironment) -> FastAPI:
    return create_app(matrix_settings, client=ts_env.client, search_attributes=False)


@pytest.fixture()
def base_url(app: FastAPI) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest_asyncio.fixture()
async def http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        yield client


async def _call(http: httpx.AsyncClient, method: str, path: str,
                token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = BODIES.get((method, path), {}) if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, _url_path(path), headers=headers, json=body)


# --------------------------------------------------------------------------- tests


def test_every_endpoint_is_classified(app: FastAPI) -> None:
    found = endpoints(app)
    unclassified = [e for e in found if e not in MIN_ROLE and e not in UNAUTHENTICATED]
    assert not unclassified, (
        f"classify these endpoints in MIN_ROLE (or UNAUTHENTICATED): {unclassified}")
    # The core endpoints are mounted: the matrix below would pass vacuously otherwise.
    assert ("POST", "/v1/containments/{workflow_id}/decisions") in found
    assert ("GET", "/metrics") in found


async def test_without_valid_credentials_every_endpoint_is_401(
        app: FastAPI, http: httpx.AsyncClient, rsa_key: rsa.RSAPrivateKey) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad = {
        "no token": None,
        "wrong token": "tok-matrix-wrong-" + uuid.uuid4().hex,
        "expired JWT": _jwt(rsa_key, roles=["admin"], exp_offset=-600),
        "JWT from another key": _jwt(other_key, roles=["admin"]),
    }
    failures = []
    for method, path in endpoints(app):
        if (method, path) in UNAUTHENTICATED:
            continue
        for label, token in bad.items():
            resp = await _call(http, method, path, token)
            if resp.status_code != 401 or "www-authenticate" not in resp.headers:
                failures.append(f"{method} {path} with {label}: {resp.status_code} {resp.text}")
    assert not failures, "\n".join(failures)


async def test_each_role_is_admitted_exactly_where_it_suffices(
        app: FastAPI, http: httpx.AsyncClient) -> None:
    failures = []
    checked = 0
    for method, path in endpoints(app):
        if (method, path) in UNAUTHENTICATED or (method, path) not in MIN_ROLE:
            continue
        needed = MIN_ROLE[(method, path)]
        for role, token in TOKENS.items():
            resp = await _call(http, method, path, token)
            checked += 1
            failures += _judge(method, path, role.value, _sufficient(role, needed), resp)
    assert checked >= 9 * len(Role)
    assert not failures, "\n".join(failures)


async def test_a_valid_jwt_carries_its_roles(app: FastAPI, http: httpx.AsyncClient,
                                             rsa_key: rsa.RSAPrivateKey) -> None:
    failures = []
    for roles in (["viewer"], ["approver"], []):
        token = _jwt(rsa_key, roles=roles)
        granted = [Role(r) for r in roles]
        for method, path in endpoints(app):
            if (method, path) in UNAUTHENTICATED or (method, path) not in MIN_ROLE:
                continue
            needed = MIN_ROLE[(method, path)]
            ok = any(_sufficient(g, needed) for g in granted)
            resp = await _call(http, method, path, token)
            failures += _judge(method, path, f"JWT roles={roles}", ok, resp)
    assert not failures, "\n".join(failures)


def _sufficient(role: Role, needed: Role) -> bool:
    if role is Role.admin:
        return True
    if needed is Role.viewer:
        return True
    return role is needed


def _judge(method: str, path: str, who: str, sufficient: bool,
           resp: httpx.Response) -> list[str]:
    where = f"{method} {path} as {who}: {resp.status_code} {resp.text[:200]}"
    if sufficient:
        if resp.status_code in (401, 403):
            return [f"refused but should pass auth — {where}"]
    elif resp.status_code != 403 or "lacks the" not in resp.text:
        return [f"should be 403 (role) — {where}"]
    return []
