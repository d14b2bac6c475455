"""Entra grant_scope/revoke_scope against the stateful Graph fake (time-bound elevation)."""

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
from activities.providers.entra import EntraProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

from .graph_fake import GraphFake

READ_SECRET = "read-client-secret-value-1234"
ACTION_SECRET = "action-client-secret-value-5678"


@pytest.fixture
def fake() -> GraphFake:
    f = GraphFake()
    f.add_client("reader", READ_SECRET)
    f.add_client("responder", ACTION_SECRET)
    return f


@pytest.fixture
def calls() -> list[tuple[str, str, str]]:
    return []


@pytest.fixture
async def provider(fake: GraphFake, calls: list[tuple[str, str, str]]
                   ) -> AsyncIterator[EntraProvider]:
    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        calls.append((request.method, request.url.path, fake.tokens.get(token, "")))
        return fake.handle(request)

    conf = ProviderSettings(
        type="entra", options={},
        read_credentials={"tenant_id": SecretStr("contoso"), "client_id": SecretStr("reader"),
                          "client_secret": SecretStr(READ_SECRET)},
        action_credentials={"tenant_id": SecretStr("contoso"),
                            "client_id": SecretStr("responder"),
                            "client_secret": SecretStr(ACTION_SECRET)})
    p = EntraProvider.from_settings("entra", conf, Settings(),
                                    transport=httpx.MockTransport(handle))
    yield p
    await p.aclose()


def test_is_a_scope_granting_provider(provider: EntraProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


@pytest.mark.parametrize("kind", [IdentityKind.user, IdentityKind.service_principal])
async def test_grant_then_revoke_roundtrip(provider: EntraProvider, fake: GraphFake,
                                           calls: list[tuple[str, str, str]],
                                           kind: IdentityKind) -> None:
    oid = fake.add_user() if kind is IdentityKind.user else fake.add_service_principal()
    other = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    fake.members[gid].add(other)
    ref = IdentityRef(provider="entra", id=oid, kind=kind)

    assert await provider.grant_scope("el-1", ref, gid) is True
    assert fake.members[gid] == {oid, other}
    assert await provider.grant_scope("el-2", ref, gid) is False
    assert await provider.revoke_scope("el-3", ref, gid) is True
    assert fake.members[gid] == {other}
    assert await provider.revoke_scope("el-4", ref, gid) is False

    graph = [c for c in calls if "/groups/" in c[1] or "/memberOf" in c[1]]
    writes = [(m, client) for m, _, client in graph if m != "GET"]
    assert writes == [("POST", "responder"), ("DELETE", "responder")]
    assert {client for m, _, client in graph if m == "GET"} == {"reader"}


async def test_preexisting_membership(provider: EntraProvider, fake: GraphFake,
                                      calls: list[tuple[str, str, str]]) -> None:
    oid = fake.add_user()
    gid = fake.add_group("admins")
    fake.members[gid].add(oid)
    ref = IdentityRef(provider="entra", id=oid, kind=IdentityKind.user)
    assert await provider.grant_scope("el-1", ref, gid) is False
    assert await provider.grant_scope("el-2", ref, "admins") is False
    assert fake.members[gid] == {oid}
    assert not [c for c in calls if c[0] == "POST" and "/groups/" in c[1]]


async def test_revoke_by_display_name(provider: EntraProvider, fake: GraphFake) -> None:
    oid = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    ref = IdentityRef(provider="entra", id=oid, kind=IdentityKind.user)
    assert await provider.grant_scope("el-1", ref, gid) is True
    assert await provider.revoke_scope("el-2", ref, "prod-db-writers") is True
    assert oid not in fake.members[gid]


async def test_refusals_and_throttling(provider: EntraProvider, fake: GraphFake) -> None:
    oid = fake.add_user()
    ref = IdentityRef(provider="entra", id=oid, kind=IdentityKind.user)
    dynamic = fake.add_group("dyn", dynamic=True)
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-1", ref, dynamic)
    assert err.value.status == 400
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-2", ref, "00000000-0000-4000-8000-00000000dead")
    assert err.value.status == 404
    gid = fake.add_group("prod")
    await provider.snapshot(ref)  # fetch the read token first: the fault hits Graph itself
    fake.throttle(429, retry_after=7)
    with pytest.raises(TransientProviderError) as terr:
        await provider.grant_scope("el-3", ref, gid)
    assert terr.value.retry_after == 7
    assert await provider.grant_scope("el-3", ref, gid) is True


async def test_member_added_between_read_and_write(fake: GraphFake) -> None:
    """Graph answers 400 "added object references already exist": that is False, not an
    error (someone else added the member after our read)."""
    oid = fake.add_user()
    gid = fake.add_group("prod-db-writers")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/members/$ref"):
            fake.members[gid].add(oid)
        return fake.handle(request)

    conf = ProviderSettings(type="entra", options={},
                            read_credentials={"token": SecretStr("static-read")},
                            action_credentials={"token": SecretStr("static-action")})
    p = EntraProvider.from_settings("entra", conf, Settings(),
                                    transport=httpx.MockTransport(handle))
    ref = IdentityRef(provider="entra", id=oid, kind=IdentityKind.user)
    try:
        assert await p.grant_scope("el-1", ref, gid) is False
        assert fake.members[gid] == {oid}
    finally:
        await p.aclose()


async def test_holds_scope_by_id_and_name(provider: EntraProvider, fake: GraphFake) -> None:
    oid = fake.add_user()
    gid = fake.add_group("prod-db-writers")
    ref = IdentityRef(provider="entra", id=oid, kind=IdentityKind.user)
    assert not provider.holds_scope(await provider.snapshot(ref), gid)
    await provider.grant_scope("el-1", ref, gid)
    snap = await provider.snapshot(ref)
    assert provider.holds_scope(snap, gid) and provider.holds_scope(snap, "prod-db-writers")
