"""SCIM 2.0 adapter against a real scim2-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.providers._http import HttpApi
from activities.providers.base import (
    IdentityProvider,
    PermanentProviderError,
    TransientProviderError,
)
from activities.providers.scim import SCIM_JSON, ScimProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance, assert_same_fields
from .conftest import SCIM_TOKEN
from .servers import closed_port

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _conf(url: str) -> ProviderSettings:
    return ProviderSettings(type="scim", options={"base_url": url, "timeout": 5},
                            read_credentials={"token": SecretStr(SCIM_TOKEN)},
                            action_credentials={"token": SecretStr(SCIM_TOKEN)})


@pytest.fixture(scope="module")
async def admin(scim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scim_url, headers={
        "Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": SCIM_JSON}) as c:
        yield c


@pytest.fixture(scope="module")
async def provider(scim_url: str) -> AsyncIterator[ScimProvider]:
    p = ScimProvider.from_settings("scim", _conf(scim_url), Settings())
    yield p
    await p.aclose()


async def make_user(admin: httpx.AsyncClient, groups: int = 2) -> tuple[str, list[str]]:
    u = await admin.post("/Users", json={"schemas": [USER],
                                         "userName": f"u-{uuid.uuid4().hex[:8]}",
                                         "active": True})
    uid = u.json()["id"]
    other = (await admin.post("/Users", json={"schemas": [USER],
                                              "userName": f"o-{uuid.uuid4().hex[:8]}"})).json()
    gids = []
    for i in range(groups):
        g = await admin.post("/Groups", json={
            "schemas": [GROUP], "displayName": f"g{i}-{uid[:6]}",
            "members": [{"value": uid}, {"value": other["id"]}]})
        gids.append(g.json()["id"])
    return uid, gids


def ref(uid: str) -> IdentityRef:
    return IdentityRef(provider="scim", id=uid, kind=IdentityKind.user)


class TestScimConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.revoke)

    @pytest.fixture
    async def target(self, provider: ScimProvider,
                     admin: httpx.AsyncClient) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            uid, _ = await make_user(admin)
            return Case(ref(uid))

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            broken = ScimProvider.from_settings(
                "scim", _conf(f"http://127.0.0.1:{closed_port()}"), Settings())
            yield broken
            await broken.aclose()

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                secrets=lambda: [SCIM_TOKEN])


async def test_reduce_scope_removes_only_the_user(provider: ScimProvider,
                                                  admin: httpx.AsyncClient) -> None:
    uid, gids = await make_user(admin)
    result = await provider.reduce_scope("a", ref(uid), {"groups": [gids[0]]})
    assert list(result.after["groups"]) == [gids[1]]
    members = (await admin.get(f"/Groups/{gids[0]}")).json()["members"]
    assert len(members) == 1 and members[0]["value"] != uid
    await provider.undo("u", result)
    members = (await admin.get(f"/Groups/{gids[0]}")).json()["members"]
    assert uid in {m["value"] for m in members} and len(members) == 2


class _RaceTransport(httpx.AsyncBaseTransport):
    """Changes the resource between the adapter's read and its PATCH: a real 412."""

    def __init__(self, admin: httpx.AsyncClient, times: int) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._admin = admin
        self.times = times
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH" and self.times > 0:
            self.times -= 1
            await self._admin.patch(request.url.path, json={
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "displayName",
                                "value": f"renamed-{uuid.uuid4().hex[:6]}"}]})
        response = await self._inner.handle_async_request(request)
        if request.method == "PATCH":
            self.statuses.append(response.status_code)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _racing(url: str, transport: httpx.AsyncBaseTransport) -> ScimProvider:
    auth = {"Authorization": f"Bearer {SCIM_TOKEN}"}
    return ScimProvider("scim", HttpApi("scim", url, read_headers=auth, action_headers=auth,
                                        transport=transport))


async def test_412_rereads_and_retries_once(scim_url: str, admin: httpx.AsyncClient) -> None:
    uid, _ = await make_user(admin, groups=1)
    race = _RaceTransport(admin, times=1)
    p = _racing(scim_url, race)
    result = await p.reduce_scope("a", ref(uid), {})
    assert race.statuses == [412, 204]
    assert result.status is ActionStatus.applied and result.after["groups"] == {}
    await p.aclose()


async def test_412_twice_is_transient(scim_url: str, admin: httpx.AsyncClient) -> None:
    uid, _ = await make_user(admin, groups=1)
    p = _racing(scim_url, _RaceTransport(admin, times=2))
    with pytest.raises(TransientProviderError) as err:
        await p.reduce_scope("a", ref(uid), {})
    assert err.value.status == 412
    await p.aclose()


async def test_unknown_user_and_unsupported_actions(provider: ScimProvider) -> None:
    with pytest.raises(PermanentProviderError) as err:
        await provider.snapshot(ref("does-not-exist"))
    assert err.value.status == 404
    for action in (provider.force_reauth, provider.rotate):
        with pytest.raises(PermanentProviderError, match="SCIM"):
            await action("x", ref("anyone"), {})


async def test_revoke_then_undo_roundtrip(provider: ScimProvider,
                                          admin: httpx.AsyncClient) -> None:
    uid, _ = await make_user(admin)
    before = await provider.snapshot(ref(uid))
    revoked = await provider.revoke("r", ref(uid), {})
    user: dict[str, Any] = (await admin.get(f"/Users/{uid}")).json()
    assert user["active"] is False
    await provider.undo("u", revoked)
    assert_same_fields(before, await provider.snapshot(ref(uid)))
