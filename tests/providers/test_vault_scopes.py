"""OpenBao grant_scope/revoke_scope against a real `bao server -dev` (time-bound elevation)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import hvac
import hvac.exceptions
import pytest
from pydantic import SecretStr

from activities.providers.base import PermanentProviderError, ScopeGrantingProvider
from activities.providers.vault import VaultProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

from .conftest import BAO_ROOT

PASSWORD = "scope-user-pw-123"


@pytest.fixture(scope="module")
def root(bao_url: str) -> hvac.Client:
    c = hvac.Client(url=bao_url, token=BAO_ROOT)
    if "userpass/" not in c.sys.list_auth_methods():
        c.sys.enable_auth_method("userpass")
    return c


def _token(root: hvac.Client, name: str, rules: str) -> str:
    root.sys.create_or_update_acl_policy(name=name, policy=rules)
    return str(root.auth.token.create(policies=[name], ttl="1h")["auth"]["client_token"])


@pytest.fixture(scope="module")
def tokens(root: hvac.Client) -> dict[str, str]:
    """A reader that may only read entities, and a writer that may also update them."""
    read = 'path "identity/entity/*" { capabilities = ["read"] }'
    write = read + '\npath "identity/entity/id/*" { capabilities = ["read", "update"] }'
    return {"read": _token(root, "stanch-scope-reader", read),
            "action": _token(root, "stanch-scope-writer", write)}


def _provider(url: str, read: str, action: str) -> VaultProvider:
    return VaultProvider.from_settings("bao", ProviderSettings(
        type="vault", options={"url": url, "timeout": 5},
        read_credentials={"token": SecretStr(read)},
        action_credentials={"token": SecretStr(action)}), Settings())


@pytest.fixture(scope="module")
async def provider(bao_url: str, tokens: dict[str, str]) -> AsyncIterator[VaultProvider]:
    p = _provider(bao_url, tokens["read"], tokens["action"])
    yield p
    await p.aclose()


def make_entity(root: hvac.Client, policies: list[str]) -> tuple[IdentityRef, str]:
    name = f"e-{uuid.uuid4().hex[:8]}"
    root.write(f"auth/userpass/users/{name}", password=PASSWORD, token_policies="default")
    eid = root.secrets.identity.create_or_update_entity(name=name,
                                                        policies=policies)["data"]["id"]
    accessor = root.sys.list_auth_methods()["userpass/"]["accessor"]
    root.secrets.identity.create_or_update_entity_alias(name=name, canonical_id=eid,
                                                        mount_accessor=accessor)
    return IdentityRef(provider="bao", id=eid, kind=IdentityKind.user), name


def entity_policies(root: hvac.Client, ref: IdentityRef) -> list[str]:
    got: dict[str, Any] = root.secrets.identity.read_entity(ref.id)
    return sorted(got["data"].get("policies") or [])


def login(url: str, user: str) -> hvac.Client:
    c = hvac.Client(url=url)
    c.auth.userpass.login(user, PASSWORD)
    return c


def can_read(c: hvac.Client, path: str) -> bool:
    try:
        c.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
        return True
    except hvac.exceptions.Forbidden:
        return False


def test_is_a_scope_granting_provider(provider: VaultProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


async def test_grant_then_revoke_roundtrip(provider: VaultProvider, root: hvac.Client,
                                           bao_url: str) -> None:
    scope = f"prod-db-{uuid.uuid4().hex[:6]}"
    secret = f"el/{scope}"
    root.sys.create_or_update_acl_policy(
        name=scope, policy=f'path "secret/data/{secret}" {{ capabilities = ["read"] }}')
    root.secrets.kv.v2.create_or_update_secret(path=secret, secret={"k": "v"})
    ref, user = make_entity(root, ["ops-read"])
    token = login(bao_url, user)  # a token issued before the grant
    assert not can_read(token, secret)

    assert await provider.grant_scope("el-1", ref, scope) is True
    assert entity_policies(root, ref) == sorted(["ops-read", scope])
    assert can_read(token, secret)  # entity policies apply to existing tokens at once
    assert await provider.grant_scope("el-2", ref, scope) is False

    assert await provider.revoke_scope("el-3", ref, scope) is True
    assert entity_policies(root, ref) == ["ops-read"]
    assert not can_read(token, secret)
    assert await provider.revoke_scope("el-4", ref, scope) is False
    assert entity_policies(root, ref) == ["ops-read"]


async def test_preexisting_policy(provider: VaultProvider, root: hvac.Client) -> None:
    ref, _ = make_entity(root, ["ops-read", "prod-db"])
    assert await provider.grant_scope("el-1", ref, "prod-db") is False
    assert entity_policies(root, ref) == ["ops-read", "prod-db"]


async def test_writes_use_the_action_token(bao_url: str, root: hvac.Client,
                                           tokens: dict[str, str]) -> None:
    ref, _ = make_entity(root, [])
    read_only = _provider(bao_url, tokens["action"], tokens["read"])  # roles swapped
    try:
        with pytest.raises(PermanentProviderError):
            await read_only.grant_scope("el-1", ref, "prod-db")
    finally:
        await read_only.aclose()
    assert entity_policies(root, ref) == []


async def test_approle_and_bad_scope_are_permanent(provider: VaultProvider,
                                                   root: hvac.Client) -> None:
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-1", IdentityRef(provider="bao", id="approle/ci",
                                                       kind=IdentityKind.service_account),
                                   "prod-db")
    assert err.value.code == "Unsupported"
    ref, _ = make_entity(root, [])
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-2", ref, "a,b")
    assert err.value.code == "InvalidScope"


async def test_holds_scope_reads_a_real_snapshot(bao_url: str, root: hvac.Client) -> None:
    ref, _ = make_entity(root, ["ops-read"])
    p = _provider(bao_url, BAO_ROOT, BAO_ROOT)  # a full snapshot lists token accessors too
    try:
        assert not p.holds_scope(await p.snapshot(ref), "prod-db")
        await p.grant_scope("el-1", ref, "prod-db")
        assert p.holds_scope(await p.snapshot(ref), "prod-db")
    finally:
        await p.aclose()
