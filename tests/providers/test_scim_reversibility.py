"""SCIM from a realistic starting state (scim2-server): contain through every rung, roll
back, and the whole directory is as it was; memberships come back with their `display`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from activities.providers.scim import SCIM_JSON, ScimProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, IdentityKind, IdentityRef

from .conftest import SCIM_TOKEN
from .reversibility import Dump, assert_rollback_exact, flatten

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
_VOLATILE = {"meta"}


@pytest.fixture(scope="module")
async def admin(scim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=scim_url, headers={
        "Authorization": f"Bearer {SCIM_TOKEN}", "Content-Type": SCIM_JSON}) as c:
        yield c


@pytest.fixture(scope="module")
async def provider(scim_url: str) -> AsyncIterator[ScimProvider]:
    conf = ProviderSettings(type="scim", options={"base_url": scim_url},
                            read_credentials={"token": SecretStr(SCIM_TOKEN)},
                            action_credentials={"token": SecretStr(SCIM_TOKEN)})
    p = ScimProvider.from_settings("scim", conf, Settings())
    yield p
    await p.aclose()


async def _user(admin: httpx.AsyncClient, name: str) -> dict[str, Any]:
    r = await admin.post("/Users", json={
        "schemas": [USER], "userName": name, "active": True, "displayName": name.title(),
        "title": "engineer", "emails": [{"value": f"{name}@example.test", "primary": True,
                                         "type": "work"}]})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def realistic(admin: httpx.AsyncClient) -> tuple[IdentityRef, list[str]]:
    """Alice in three groups shared with Bob, each membership with its display name; a
    fourth group only Bob is in."""
    tag = uuid.uuid4().hex[:6]
    alice = await _user(admin, f"alice{tag}")
    bob = await _user(admin, f"bob{tag}")
    ids = [alice["id"], bob["id"]]
    members = [{"value": u["id"], "display": u["displayName"], "type": "User"}
               for u in (alice, bob)]
    for name in ("admins", "deploy", "readers"):
        r = await admin.post("/Groups", json={"schemas": [GROUP], "displayName":
                                              f"{name}-{tag}", "members": members})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r = await admin.post("/Groups", json={"schemas": [GROUP], "displayName": f"others-{tag}",
                                          "members": members[1:]})
    ids.append(r.json()["id"])
    return IdentityRef(provider="scim", id=alice["id"], kind=IdentityKind.user), ids


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k not in _VOLATILE}
    if "members" in out:  # order is not meaningful; each member entry compared whole
        out["members"] = sorted(out["members"], key=lambda m: m["value"])
    return out


async def test_every_rung_then_rollback_restores_the_whole_directory(
        provider: ScimProvider, admin: httpx.AsyncClient) -> None:
    ref, ids = await realistic(admin)

    async def dump() -> Dump:
        out: Dump = {}
        users, groups = ids[:2], ids[2:]
        for kind, found in (("Users", users), ("Groups", groups)):
            for rid in found:
                r = await admin.get(f"/{kind}/{rid}")
                out.update(flatten({f"{kind}/{rid}": _comparable(r.json())}))
        return out

    before = await dump()
    assert any("display" in str(v) for v in before.values())
    await assert_rollback_exact("scim", provider, ref, [
        (Action.reduce_scope, {}), (Action.revoke, {})], dump, {}, tag=f"scim-{ref.id}")
