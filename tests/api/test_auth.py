"""Authentication: API tokens, OIDC JWTs (file and URL JWKS), roles, and the CLI token."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from stanch.api.auth import (
    Authenticator,
    AuthFailure,
    effective_roles,
    hash_token,
    mint_token,
    require,
)
from stanch.clientauth import auth_headers, cli_token
from stanch.config import ApiToken, ConfigError, OidcSettings, PrincipalSettings, Settings
from stanch.models import Principal, Role

ISSUER = "https://idp.example.test"
AUDIENCE = "stanch-api"

TOKENS = {
    "viewer": "tok-viewer-0123456789",
    "responder": "tok-responder-0123456789",
    "approver": "tok-approver-0123456789",
    "admin": "tok-admin-0123456789",
}


# --------------------------------------------------------------------------- helpers


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    algo = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algo.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=kid, use="sig")
    return jwk


def _jwt(key: Any, kid: str | None, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return _rsa_key()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: Any, ec_key: Any) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "k1"), _jwk(ec_key, "e1")]}))
    return path


def _settings(jwks_file: Path | None = None, **oidc: Any) -> Settings:
    return Settings(
        api_tokens=[
            ApiToken(sha256=hash_token(t), principal=f"{role}-bot", roles=[role])
            for role, t in TOKENS.items()
        ],
        principals={
            "alice": PrincipalSettings(
                groups=["secops"], roles=["responder"], identity_keys=["mock:alice"]
            ),
            "viewer-bot": PrincipalSettings(groups=["bots"]),
        },
        oidc=OidcSettings(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_file=str(jwks_file) if jwks_file else None,
            **oidc,
        ),
    )


def _app(authenticator: Authenticator) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = authenticator

    for role in Role:

        async def endpoint(principal: Principal = Depends(require(role))) -> dict[str, Any]:
            return principal.model_dump(mode="json")

        app.add_api_route(f"/{role.value}", endpoint, methods=["GET"])
    return app


def _client(authenticator: Authenticator) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=_app(authenticator))
    return httpx.AsyncClient(transport=transport, base_url="http://stanch.test")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- API tokens


async def test_missing_token_is_401_with_bearer_challenge(jwks_file: Path) -> None:
    async with _client(Authenticator.from_settings(_settings(jwks_file))) as client:
        resp = await client.get("/viewer")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["detail"] == "missing token"


async def test_unknown_token_is_401_and_not_echoed() -> None:
    secret = "definitely-not-configured-token"
    async with _client(Authenticator.from_settings(_settings())) as client:
        resp = await client.get("/viewer", headers=_bearer(secret))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert resp.json()["detail"] == "unknown token"
    assert secret not in resp.text


async def test_other_scheme_is_refused() -> None:
    async with _client(Authenticator.from_settings(_settings())) as client:
        resp = await client.get("/viewer", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status_code == 401
    assert "Bearer" in resp.json()["detail"]


# Which endpoints each token's role may reach: admin all; responder/approver imply viewer.
ALLOWED = {
    "viewer": {"viewer"},
    "responder": {"viewer", "responder"},
    "approver": {"viewer", "approver"},
    "admin": {"viewer", "responder", "approver", "admin"},
}


@pytest.mark.parametrize("holder", list(TOKENS))
@pytest.mark.parametrize("endpoint", [r.value for r in Role])
async def test_role_matrix(holder: str, endpoint: str) -> None:
    async with _client(Authenticator.from_settings(_settings())) as client:
        resp = await client.get(f"/{endpoint}", headers=_bearer(TOKENS[holder]))
    if endpoint in ALLOWED[holder]:
        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == f"{holder}-bot"
    else:
        assert resp.status_code == 403
        assert endpoint in resp.json()["detail"]
        assert "www-authenticate" not in resp.headers


async def test_token_principal_merges_directory_entry() -> None:
    auth = Authenticator.from_settings(_settings())
    principal = await auth.authenticate(f"Bearer {TOKENS['viewer']}")
    assert principal.groups == ["bots"]
    assert principal.roles == [Role.viewer]


def test_effective_roles() -> None:
    assert effective_roles([Role.admin]) == frozenset(Role)
    assert effective_roles([Role.responder]) == {Role.responder, Role.viewer}
    assert effective_roles([Role.approver]) == {Role.approver, Role.viewer}
    assert effective_roles([]) == frozenset()


async def test_minted_token_round_trip() -> None:
    minted = mint_token("carol", roles=["approver"], groups=["secops"])
    assert minted.entry.sha256 == hash_token(minted.token)
    assert minted.token not in minted.toml()
    assert f'sha256 = "{minted.entry.sha256}"' in minted.toml()
    auth = Authenticator(api_tokens=[minted.entry])
    principal = await auth.authenticate(f"Bearer {minted.token}")
    assert principal == Principal(id="carol", groups=["secops"], roles=[Role.approver])
    assert mint_token("x").token != mint_token("x").token


def test_bad_role_in_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"api_tokens\.0\.roles: unknown role 'root'"):
        Authenticator(api_tokens=[ApiToken(sha256=hash_token("t"), principal="p", roles=["root"])])
    with pytest.raises(ConfigError, match="unknown role"):
        mint_token("p", roles=["superuser"])


def test_half_configured_oidc_is_a_config_error(jwks_file: Path) -> None:
    with pytest.raises(ConfigError, match="audience"):
        Authenticator(oidc=OidcSettings(issuer=ISSUER, jwks_file=str(jwks_file)))


# --------------------------------------------------------------------------- JWT via file


async def test_jwt_roles_and_groups_and_directory(jwks_file: Path, rsa_key: Any) -> None:
    token = _jwt(rsa_key, "k1", roles=["approver", "not-a-stanch-role"], groups=["oncall"])
    async with _client(Authenticator.from_settings(_settings(jwks_file))) as client:
        ok = await client.get("/approver", headers=_bearer(token))
        responder = await client.get("/responder", headers=_bearer(token))
        admin = await client.get("/admin", headers=_bearer(token))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "id": "alice",
        "groups": ["oncall", "secops"],
        "roles": ["approver", "responder"],  # responder comes from settings.principals
        "identity_keys": ["mock:alice"],
    }
    assert responder.status_code == 200
    assert admin.status_code == 403


async def test_es256_jwt(jwks_file: Path, ec_key: Any) -> None:
    token = _jwt(ec_key, "e1", alg="ES256", sub="bob", roles="viewer")
    principal = await Authenticator.from_settings(_settings(jwks_file)).authenticate(
        f"Bearer {token}"
    )
    assert principal == Principal(id="bob", roles=[Role.viewer])


async def test_nested_claims(jwks_file: Path, rsa_key: Any) -> None:
    settings = _settings(jwks_file, roles_claim="realm_access.roles", groups_claim="grp")
    token = _jwt(rsa_key, "k1", sub="dave", realm_access={"roles": ["admin"]}, grp="a b")
    principal = await Authenticator.from_settings(settings).authenticate(f"Bearer {token}")
    assert principal.roles == [Role.admin]
    assert principal.groups == ["a", "b"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "expired token"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"nbf": int(time.time()) + 600}, "token not yet valid"),
        ({"sub": None}, "token lacks the 'sub' claim"),
        ({"exp": None}, "token lacks the 'exp' claim"),
    ],
)
async def test_jwt_claim_failures(
    jwks_file: Path, rsa_key: Any, claims: dict[str, Any], reason: str
) -> None:
    token = _jwt(rsa_key, "k1", roles=["admin"], **claims)
    async with _client(Authenticator.from_settings(_settings(jwks_file))) as client:
        resp = await client.get("/viewer", headers=_bearer(token))
    assert resp.status_code == 401
    assert resp.json()["detail"] == reason
    assert resp.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert token not in resp.text


async def test_leeway_accepts_recently_expired(jwks_file: Path, rsa_key: Any) -> None:
    token = _jwt(rsa_key, "k1", exp=int(time.time()) - 5)
    auth = Authenticator.from_settings(_settings(jwks_file, leeway_seconds=30))
    assert (await auth.authenticate(f"Bearer {token}")).id == "alice"
    strict = Authenticator.from_settings(_settings(jwks_file, leeway_seconds=0))
    with pytest.raises(AuthFailure, match="expired token"):
        await strict.authenticate(f"Bearer {token}")


async def test_bad_signature(jwks_file: Path, other_rsa_key: Any) -> None:
    # Signed by a key we do not trust, claiming the kid of one we do.
    token = _jwt(other_rsa_key, "k1", roles=["admin"])
    async with _client(Authenticator.from_settings(_settings(jwks_file))) as client:
        resp = await client.get("/viewer", headers=_bearer(token))
    assert resp.status_code == 401
    assert resp.json()["detail"] == "bad signature"


async def test_tampered_payload_is_bad_signature(jwks_file: Path, rsa_key: Any) -> None:
    head, _, sig = _jwt(rsa_key, "k1", roles=["viewer"]).split(".")
    forged_body = jwt.utils.base64url_encode(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": 2**31,
                    "roles": ["admin"]}).encode()
    ).decode()
    auth = Authenticator.from_settings(_settings(jwks_file))
    with pytest.raises(AuthFailure, match="bad signature"):
        await auth.authenticate(f"Bearer {head}.{forged_body}.{sig}")


async def test_hs256_and_none_are_refused(jwks_file: Path) -> None:
    auth = Authenticator.from_settings(_settings(jwks_file))
    hs = jwt.encode({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": 2**31},
                    "k" * 32, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(AuthFailure, match="unsupported token algorithm"):
        await auth.authenticate(f"Bearer {hs}")
    none = jwt.encode({"sub": "alice"}, None, algorithm="none")
    with pytest.raises(AuthFailure, match="unsupported token algorithm"):
        await auth.authenticate(f"Bearer {none}")


async def test_key_type_must_match_algorithm(jwks_file: Path, ec_key: Any) -> None:
    # An ES256 token pointing at the RSA key's kid.
    token = _jwt(ec_key, "k1", alg="ES256")
    auth = Authenticator.from_settings(_settings(jwks_file))
    with pytest.raises(AuthFailure, match="does not match"):
        await auth.authenticate(f"Bearer {token}")


async def test_unknown_kid_in_file_and_file_rotation(
    tmp_path: Path, rsa_key: Any, other_rsa_key: Any
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "k1")]}))
    auth = Authenticator.from_settings(_settings(path), jwks_min_refresh_seconds=0)
    new_token = _jwt(other_rsa_key, "k2")
    with pytest.raises(AuthFailure, match="unknown signing key"):
        await auth.authenticate(f"Bearer {new_token}")
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "k1"), _jwk(other_rsa_key, "k2")]}))
    assert (await auth.authenticate(f"Bearer {new_token}")).id == "alice"


async def test_jwt_without_kid_uses_the_only_key(tmp_path: Path, rsa_key: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_jwk(rsa_key, "k1")]}))
    auth = Authenticator.from_settings(_settings(path))
    assert (await auth.authenticate(f"Bearer {_jwt(rsa_key, None)}")).id == "alice"


async def test_jwt_without_oidc_is_just_an_unknown_token(rsa_key: Any) -> None:
    auth = Authenticator.from_settings(Settings())
    with pytest.raises(AuthFailure, match="unknown token"):
        await auth.authenticate(f"Bearer {_jwt(rsa_key, 'k1')}")


# --------------------------------------------------------------------------- JWKS over HTTP


class _JwksServer:
    """A real JWKS endpoint on a free port; ``keys`` can be swapped to simulate rotation."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    with _JwksServer() as server:
        yield server


def _url_settings(server: _JwksServer) -> Settings:
    return _settings(None, jwks_url=server.url)


async def test_jwks_url_caches_and_refetches_on_rotation(
    jwks_server: _JwksServer, rsa_key: Any, other_rsa_key: Any
) -> None:
    jwks_server.keys = [_jwk(rsa_key, "k1")]
    auth = Authenticator.from_settings(_url_settings(jwks_server), jwks_min_refresh_seconds=0)
    old = _jwt(rsa_key, "k1", roles=["viewer"])

    async with _client(auth) as client:
        assert (await client.get("/viewer", headers=_bearer(old))).status_code == 200
        assert (await client.get("/viewer", headers=_bearer(old))).status_code == 200
        assert jwks_server.fetches == 1  # cached

        # The IdP rotates: k2 replaces k1. A token with the new kid forces one refetch.
        jwks_server.keys = [_jwk(other_rsa_key, "k2")]
        new = _jwt(other_rsa_key, "k2", roles=["viewer"])
        assert (await client.get("/viewer", headers=_bearer(new))).status_code == 200
        assert jwks_server.fetches == 2
        assert (await client.get("/viewer", headers=_bearer(new))).status_code == 200
        assert jwks_server.fetches == 2

        # The retired key is no longer trusted.
        resp = await client.get("/viewer", headers=_bearer(old))
        assert resp.status_code == 401
        assert resp.json()["detail"] == "unknown signing key"


async def test_unknown_kid_refetch_has_a_cooldown(
    jwks_server: _JwksServer, rsa_key: Any
) -> None:
    jwks_server.keys = [_jwk(rsa_key, "k1")]
    auth = Authenticator.from_settings(_url_settings(jwks_server), jwks_min_refresh_seconds=60)
    assert (await auth.authenticate(f"Bearer {_jwt(rsa_key, 'k1')}")).id == "alice"
    for i in range(5):
        with pytest.raises(AuthFailure, match="unknown signing key"):
            await auth.authenticate(f"Bearer {_jwt(rsa_key, f'made-up-{i}')}")
    assert jwks_server.fetches == 1


async def test_jwks_cache_expires(jwks_server: _JwksServer, rsa_key: Any) -> None:
    jwks_server.keys = [_jwk(rsa_key, "k1")]
    auth = Authenticator.from_settings(_url_settings(jwks_server), jwks_cache_seconds=0.05)
    token = f"Bearer {_jwt(rsa_key, 'k1')}"
    await auth.authenticate(token)
    time.sleep(0.1)
    await auth.authenticate(token)
    assert jwks_server.fetches == 2


async def test_jwks_unavailable_is_503(jwks_server: _JwksServer, rsa_key: Any) -> None:
    jwks_server.status = 500
    auth = Authenticator.from_settings(_url_settings(jwks_server))
    async with _client(auth) as client:
        resp = await client.get("/viewer", headers=_bearer(_jwt(rsa_key, "k1")))
    assert resp.status_code == 503
    assert resp.json()["detail"] == "signing keys unavailable"


# --------------------------------------------------------------------------- CLI token


def test_cli_token_from_env_then_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert cli_token(env) is None
    assert auth_headers(env) == {}
    (tmp_path / "stanch").mkdir()
    (tmp_path / "stanch" / "token").write_text("from-file\n")
    assert cli_token(env) == "from-file"
    assert cli_token({**env, "STANCH_TOKEN": " from-env "}) == "from-env"
    assert auth_headers({**env, "STANCH_TOKEN": "t"}) == {"Authorization": "Bearer t"}


def test_cli_token_default_path_is_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("STANCH_TOKEN", raising=False)
    path = tmp_path / ".config" / "stanch" / "token"
    path.parent.mkdir(parents=True)
    path.write_text("home-token")
    assert cli_token() == "home-token"


async def test_stale_keys_survive_an_unreachable_jwks(
    jwks_server: _JwksServer, rsa_key: Any
) -> None:
    jwks_server.keys = [_jwk(rsa_key, "k1")]
    auth = Authenticator.from_settings(
        _url_settings(jwks_server), jwks_cache_seconds=0.05, jwks_min_refresh_seconds=30
    )
    token = f"Bearer {_jwt(rsa_key, 'k1')}"
    await auth.authenticate(token)
    jwks_server.status = 503
    time.sleep(0.1)
    assert (await auth.authenticate(token)).id == "alice"
    assert (await auth.authenticate(token)).id == "alice"
    assert jwks_server.fetches == 2  # one failed refresh, then a cooldown
