"""OpenBao from a realistic starting state (`bao server -dev`): contain through every rung,
roll back, and only the declared losses differ."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import hvac
import pytest
from pydantic import SecretStr

from activities.providers.vault import VaultProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, IdentityKind, IdentityRef

from .conftest import BAO_ROOT
from .reversibility import Dump, assert_rollback_exact, flatten

PASSWORD = "user-login-pw-123"


@pytest.fixture(scope="module")
def root(bao_url: str) -> hvac.Client:
    c = hvac.Client(url=bao_url, token=BAO_ROOT)
    mounts = c.sys.list_auth_methods()
    for kind in ("userpass", "approle"):
        if f"{kind}/" not in mounts:
            c.sys.enable_auth_method(kind)
    return c


@pytest.fixture(scope="module")
async def provider(bao_url: str) -> AsyncIterator[VaultProvider]:
    conf = ProviderSettings(type="vault", options={"url": bao_url},
                            read_credentials={"token": SecretStr(BAO_ROOT)},
                            action_credentials={"token": SecretStr(BAO_ROOT)})
    p = VaultProvider.from_settings("bao", conf, Settings())
    yield p
    await p.aclose()


def _entity(root: hvac.Client, url: str, name: str, logins: int) -> str:
    root.write(f"auth/userpass/users/{name}", password=PASSWORD, token_policies="default")
    eid = str(root.secrets.identity.create_or_update_entity(
        name=name, policies=["ops-read", "ops-write", "shared"],
        metadata={"team": "platform", "owner": name})["data"]["id"])
    accessor = root.sys.list_auth_methods()["userpass/"]["accessor"]
    root.secrets.identity.create_or_update_entity_alias(name=name, canonical_id=eid,
                                                        mount_accessor=accessor)
    for _ in range(logins):
        hvac.Client(url=url).auth.userpass.login(name, PASSWORD)
    return eid


async def test_entity_every_rung_then_rollback(provider: VaultProvider, root: hvac.Client,
                                               bao_url: str) -> None:
    tag = uuid.uuid4().hex[:6]
    alice = _entity(root, bao_url, f"alice-{tag}", logins=2)
    bob = _entity(root, bao_url, f"bob-{tag}", logins=1)

    async def dump() -> Dump:
        tree: dict[str, Any] = {}
        for eid in (alice, bob):
            e = root.secrets.identity.read_entity(eid)["data"]
            snap = await provider.snapshot(IdentityRef(provider="bao", id=eid,
                                                       kind=IdentityKind.user))
            tree[eid] = {"name": e["name"], "policies": sorted(e["policies"]),
                         "disabled": e["disabled"], "metadata": e["metadata"],
                         "aliases": sorted(a["name"] for a in e["aliases"]),
                         "tokens": snap["token_accessors"], "leases": snap["leases"]}
        return flatten(tree)

    ref = IdentityRef(provider="bao", id=alice, kind=IdentityKind.user)
    before, after, _ = await assert_rollback_exact(
        "vault", provider, ref, [(Action.reduce_scope, {"policies": ["ops-write", "shared"]}),
                                 (Action.force_reauth, {}), (Action.revoke, {})], dump, {
            "sessions": lambda p: p == f"{alice}/tokens",
            "leases": lambda p: p == f"{alice}/leases",
        }, tag=f"bao-{tag}")
    assert len(before[f"{alice}/tokens"]) == 2 and after[f"{alice}/tokens"] == []
    assert before[f"{bob}/tokens"] == after[f"{bob}/tokens"]


async def test_approle_rotate_loses_only_the_old_secret_id(provider: VaultProvider,
                                                           root: hvac.Client) -> None:
    role = f"svc-{uuid.uuid4().hex[:8]}"
    root.auth.approle.create_or_update_approle(role, token_policies=["default", "deploy"])
    old = root.auth.approle.generate_secret_id(role)["data"]["secret_id_accessor"]

    async def dump() -> Dump:
        r = root.auth.approle.read_role(role)["data"]
        ids = root.auth.approle.list_secret_id_accessors(role)["data"]["keys"]
        return flatten({"policies": sorted(r["token_policies"]), "secret_ids": sorted(ids)})

    ref = IdentityRef(provider="bao", id=f"approle/{role}", kind=IdentityKind.service_account)
    before, after, [rotate] = await assert_rollback_exact(
        "vault", provider, ref, [(Action.rotate, {"secret_id_accessor": old})], dump,
        {"old_secret": lambda p: p == "secret_ids"}, tag=f"bao-rot-{role}")
    assert before["secret_ids"] == [old] and old not in after["secret_ids"]
    assert rotate.undo is None and rotate.irreversible
