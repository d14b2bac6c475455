"""Okta grant_scope/revoke_scope against the stateful fake; every request is checked
against Okta's published management contract (time-bound elevation)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from activities.providers.base import (
    PermanentProviderError,
    ScopeGrantingProvider,
    TransientProviderError,
)
from activities.providers.okta import OktaProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

from .okta_fake import ORG, OktaFake, okta_spec

READ_TOKEN = "00read-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
ACTION_TOKEN = "00action-token-bbbbbbbbbbbbbbbbbbbbbbbbbbb"


@pytest.fixture(scope="module", autouse=True)
def _spec_loaded() -> None:
    okta_spec()


@pytest.fixture
def fake() -> OktaFake:
    return OktaFake()


@pytest.fixture
def calls() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
async def provider(fake: OktaFake, calls: list[tuple[str, str, str]]
                   ) -> AsyncIterator[OktaProvider]:
    def handle(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path,
                      request.headers.get("Authorization", "")))
        return fake.handle(request)  # validates against the contract first

    conf = ProviderSettings(type="okta", options={"org_url": ORG},
                            read_credentials={"token": SecretStr(READ_TOKEN)},
                            action_credentials={"token": SecretStr(ACTION_TOKEN)})
    p = OktaProvider.from_settings("okta", conf, Settings(),
                                   transport=httpx.MockTransport(handle))
    yield p
    await p.aclose()


def user(uid: str) -> IdentityRef:
    return IdentityRef(provider="okta", id=uid, kind=IdentityKind.user)


def test_is_a_scope_granting_provider(provider: OktaProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


async def test_grant_then_revoke_roundtrip(provider: OktaProvider, fake: OktaFake,
                                           calls: list[tuple[str, str, str]]) -> None:
    uid, other = fake.add_user(), fake.add_user()
    gid = fake.add_group("prod-db-writers")
    fake.members[gid].add(other)

    assert await provider.grant_scope("el-1", user(uid), gid) is True
    assert fake.members[gid] == {uid, other}
    assert await provider.grant_scope("el-2", user(uid), gid) is False
    assert await provider.revoke_scope("el-3", user(uid), gid) is True
    assert fake.members[gid] == {other}
    assert await provider.revoke_scope("el-4", user(uid), gid) is False

    writes = [(m, a) for m, path, a in calls if m in ("PUT", "DELETE")]
    assert writes == [("PUT", f"SSWS {ACTION_TOKEN}"), ("DELETE", f"SSWS {ACTION_TOKEN}")]
    assert all(a == f"SSWS {READ_TOKEN}" for m, _, a in calls if m == "GET")


async def test_revoke_by_name_of_a_held_group(provider: OktaProvider, fake: OktaFake) -> None:
    uid = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    assert await provider.grant_scope("el-1", user(uid), gid) is True
    assert await provider.grant_scope("el-2", user(uid), "prod-db-writers") is False
    assert await provider.revoke_scope("el-3", user(uid), "prod-db-writers") is True
    assert uid not in fake.members[gid]


async def test_preexisting_membership(provider: OktaProvider, fake: OktaFake,
                                      calls: list[tuple[str, str, str]]) -> None:
    uid = fake.add_user()
    gid = fake.add_group("admins")
    fake.members[gid].add(uid)
    assert await provider.grant_scope("el-1", user(uid), gid) is False
    assert fake.members[gid] == {uid}
    assert not [c for c in calls if c[0] != "GET"]


async def test_refusals(provider: OktaProvider, fake: OktaFake) -> None:
    uid = fake.add_user()
    builtin = fake.add_group("Everyone", "BUILT_IN")
    with pytest.raises(PermanentProviderError) as err:  # only OKTA_GROUP memberships change
        await provider.grant_scope("el-1", user(uid), builtin)
    assert err.value.status == 403
    with pytest.raises(PermanentProviderError) as err:  # a name that is not held: no lookup
        await provider.grant_scope("el-2", user(uid), "prod-db-writers")
    assert err.value.status == 404
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-3", IdentityRef(provider="okta", id="0oaapp",
                                                       kind=IdentityKind.oauth_app), "00gx")
    assert err.value.code == "Unsupported"


async def test_rate_limit_is_transient(provider: OktaProvider, fake: OktaFake) -> None:
    uid = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    fake.rate_limit(20)
    with pytest.raises(TransientProviderError) as err:
        await provider.grant_scope("el-1", user(uid), gid)
    assert err.value.retry_after is not None and 1 <= err.value.retry_after <= 21
    assert await provider.grant_scope("el-1", user(uid), gid) is True


async def test_holds_scope_by_id_and_name(provider: OktaProvider, fake: OktaFake) -> None:
    uid = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    assert not provider.holds_scope(await provider.snapshot(user(uid)), gid)
    await provider.grant_scope("el-1", user(uid), gid)
    snap = await provider.snapshot(user(uid))
    assert provider.holds_scope(snap, gid) and provider.holds_scope(snap, "prod-db-writers")
