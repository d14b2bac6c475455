"""SCIM grant_scope/revoke_scope against a real scim2-server (time-bound elevation)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from activities.providers.base import (
    PermanentProviderError,
    ScopeGrantingProvider,
    TransientProviderError,
)
from activities.providers.scim import SCIM_JSON, ScimProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

from .conftest import SCIM_TOKEN
from .test_scim import _RaceTransport, _racing

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


@pytest.fixture(scope="module")
async def admin(scim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scim_url, headers={
        "Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": SCIM_JSON}) as c:
        yield c


@pytest.fixture(scope="module")
async def provider(scim_url: str) -> AsyncIterator[ScimProvider]:
    conf = ProviderSettings(type="scim", options={"base_url": scim_url, "timeout": 5},
                            read_credentials={"token": SecretStr(SCIM_TOKEN)},
                            action_credentials={"token": SecretStr(SCIM_TOKEN)})
    p = ScimProvider.from_settings("scim", conf, Settings())
    yield p
    await p.aclose()


async def new_user(admin: httpx.AsyncClient) -> str:
    r = await admin.post("/Users", json={"schemas": [USER], "active": True,
                                         "userName": f"u-{uuid.uuid4().hex[:8]}"})
    r.raise_for_status()
    return str(r.json()["id"])


async def new_group(admin: httpx.AsyncClient, members: list[str]) -> tuple[str, str]:
    name = f"prod-db-{uuid.uuid4().hex[:8]}"
    r = await admin.post("/Groups", json={"schemas": [GROUP], "displayName": name,
                                          "members": [{"value": m} for m in members]})
    r.raise_for_status()
    return str(r.json()["id"]), name


async def members(admin: httpx.AsyncClient, gid: str) -> set[str]:
    r = await admin.get(f"/Groups/{gid}")
    r.raise_for_status()
    return {m["value"] for m in r.json().get("members") or []}


def ref(uid: str) -> IdentityRef:
    return IdentityRef(provider="scim", id=uid, kind=IdentityKind.user)


def test_is_a_scope_granting_provider(provider: ScimProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


@pytest.mark.parametrize("by", ["id", "displayName"])
async def test_grant_then_revoke_roundtrip(provider: ScimProvider, admin: httpx.AsyncClient,
                                           by: str) -> None:
    uid, other = await new_user(admin), await new_user(admin)
    gid, name = await new_group(admin, [other])
    scope = gid if by == "id" else name

    assert await provider.grant_scope("el-1", ref(uid), scope) is True
    assert await members(admin, gid) == {uid, other}
    assert await provider.grant_scope("el-2", ref(uid), scope) is False
    assert await provider.revoke_scope("el-3", ref(uid), scope) is True
    assert await members(admin, gid) == {other}  # the other member stays
    assert await provider.revoke_scope("el-4", ref(uid), scope) is False
    assert await members(admin, gid) == {other}


async def test_preexisting_membership(provider: ScimProvider, admin: httpx.AsyncClient) -> None:
    uid = await new_user(admin)
    gid, name = await new_group(admin, [uid])
    assert await provider.grant_scope("el-1", ref(uid), gid) is False
    assert await provider.grant_scope("el-2", ref(uid), name) is False
    assert await members(admin, gid) == {uid}


async def test_grant_rereads_after_412(scim_url: str, admin: httpx.AsyncClient) -> None:
    uid, other = await new_user(admin), await new_user(admin)
    gid, _ = await new_group(admin, [other])
    race = _RaceTransport(admin, times=1)
    p = _racing(scim_url, race)
    try:
        assert await p.grant_scope("el-1", ref(uid), gid) is True
        assert race.statuses == [412, 204]
        assert await members(admin, gid) == {uid, other}
        race.times = 2
        with pytest.raises(TransientProviderError) as err:
            await p.revoke_scope("el-2", ref(uid), gid)
        assert err.value.status == 412
        assert uid in await members(admin, gid)  # nothing half-done: still a member
    finally:
        await p.aclose()


async def test_unknown_group_and_user_are_permanent(provider: ScimProvider,
                                                    admin: httpx.AsyncClient) -> None:
    uid = await new_user(admin)
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-1", ref(uid), f"no-such-{uuid.uuid4().hex[:6]}")
    assert err.value.code == "NoSuchGroup"
    gid, _ = await new_group(admin, [])
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-2", ref("does-not-exist"), gid)
    assert err.value.status == 404
    assert await members(admin, gid) == set()


async def test_holds_scope_by_id_and_name(provider: ScimProvider,
                                          admin: httpx.AsyncClient) -> None:
    uid = await new_user(admin)
    gid, name = await new_group(admin, [])
    assert not provider.holds_scope(await provider.snapshot(ref(uid)), gid)
    await provider.grant_scope("el-1", ref(uid), gid)
    snap = await provider.snapshot(ref(uid))
    assert provider.holds_scope(snap, gid) and provider.holds_scope(snap, name)
