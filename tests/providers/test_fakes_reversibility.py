"""Okta and Microsoft Graph from realistic starting states, on the spec-faithful fakes in
tests/providers: contain through every rung, roll back, and the whole fake directory
differs only in the declared losses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import pytest

from activities.providers.entra import EntraProvider
from activities.providers.okta import OktaProvider
from stanch.config import Settings
from stanch.models import Action, IdentityKind, IdentityRef

from .graph_fake import GraphFake
from .okta_fake import OktaFake, okta_spec
from .reversibility import Dump, assert_rollback_exact, flatten
from .test_entra import ACTION_SECRET, READ_SECRET
from .test_entra import _conf as entra_conf
from .test_okta import _conf as okta_conf

_VOLATILE = ("lastUpdated", "seen", "faults", "tokens")


def _dump_fake(fake: Any) -> Dump:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in _VOLATILE}
        if isinstance(value, set):
            return sorted(value)
        return value
    return flatten(clean(asdict(fake)))


@pytest.fixture
async def okta() -> AsyncIterator[tuple[OktaFake, OktaProvider]]:
    okta_spec()
    fake = OktaFake()
    p = OktaProvider.from_settings("okta", okta_conf(), Settings(), transport=fake.transport())
    yield fake, p
    await p.aclose()


@pytest.fixture
async def graph() -> AsyncIterator[tuple[GraphFake, EntraProvider]]:
    fake = GraphFake()
    fake.add_client("reader", READ_SECRET)
    fake.add_client("responder", ACTION_SECRET)
    p = EntraProvider.from_settings("entra", entra_conf(), Settings(),
                                    transport=fake.transport())
    yield fake, p
    await p.aclose()


async def test_okta_user_every_rung_then_rollback(okta: tuple[OktaFake, OktaProvider]) -> None:
    fake, provider = okta
    alice, bob = fake.add_user(), fake.add_user()
    for name, kind in (("Admins", "OKTA_GROUP"), ("Deploy", "OKTA_GROUP"),
                       ("Everyone", "BUILT_IN"), ("AD Imported", "APP_GROUP")):
        gid = fake.add_group(name, kind)
        fake.members[gid] |= {alice, bob}
    fake.add_grant(alice, "0oaclient1")
    fake.add_grant(bob, "0oaclient1")

    async def dump() -> Dump:
        return _dump_fake(fake)

    ref = IdentityRef(provider="okta", id=alice, kind=IdentityKind.user)
    before, after, _ = await assert_rollback_exact(
        "okta", provider, ref, [(Action.reduce_scope, {}), (Action.force_reauth, {"grants": True}),
                                (Action.revoke, {})], dump, {
            # the fake counts OAuth tokens revoked with the sessions (oauthTokens=true)
            "sessions": lambda p: p in (f"sessions/{alice}", f"users/{alice}/_revoked_tokens"),
            "oauth_grants": lambda p: p == f"grants/{alice}" or p.startswith(f"grants/{alice}/"),
        }, tag="okta")
    assert before[f"sessions/{bob}"] == after[f"sessions/{bob}"] == 2


async def test_okta_app_rotate_then_rollback_restores_secrets(
        okta: tuple[OktaFake, OktaProvider]) -> None:
    fake, provider = okta
    app = fake.add_app(secrets_count=1)
    other = fake.add_app(secrets_count=2)
    old = next(iter(fake.app_secrets[app]))

    async def dump() -> Dump:
        return _dump_fake(fake)

    await assert_rollback_exact(
        "okta", provider, IdentityRef(provider="okta", id=app, kind=IdentityKind.oauth_app),
        [(Action.rotate, {"credentials": [old]})], dump, {}, tag="okta-rot")
    assert len(fake.app_secrets[other]) == 2


async def test_entra_user_every_rung_then_rollback(
        graph: tuple[GraphFake, EntraProvider]) -> None:
    fake, provider = graph
    alice, bob = fake.add_user(), fake.add_user()
    for name, dynamic in (("Admins", False), ("Deploy", False), ("All staff", True)):
        gid = fake.add_group(name, dynamic)
        fake.members[gid] |= {alice, bob}
    for who in (alice, bob):
        fake.assign_role(who, "res-1", "role-admin")
        fake.assign_role(who, "res-2", "role-read")

    async def dump() -> Dump:
        return _dump_fake(fake)

    ref = IdentityRef(provider="entra", id=alice, kind=IdentityKind.user)
    _, after, _ = await assert_rollback_exact(
        "entra", provider, ref, [(Action.reduce_scope, {}), (Action.force_reauth, {}),
                                 (Action.revoke, {})], dump, {
            "sessions": lambda p: p == f"objects/{alice}/signInSessionsValidFromDateTime",
            "assignment_ids": lambda p: p.startswith("assignments/"),
        }, tag="entra")
    mine = [a for a in after.items() if a[0].endswith("/principalId") and a[1] == alice]
    assert len(mine) == 2  # both assignments are back, under new ids


async def test_entra_service_principal_rotate_loses_the_old_password(
        graph: tuple[GraphFake, EntraProvider]) -> None:
    fake, provider = graph
    sp = fake.add_service_principal(passwords=1)
    fake.add_service_principal(passwords=1)
    old = fake.objects[sp]["passwordCredentials"][0]["keyId"]

    async def dump() -> Dump:
        return _dump_fake(fake)

    ref = IdentityRef(provider="entra", id=sp, kind=IdentityKind.service_principal)
    await assert_rollback_exact(
        "entra", provider, ref, [(Action.rotate, {"credentials": [old]})], dump, {
            "old_secret": lambda p: p in (f"objects/{sp}/passwordCredentials",
                                          "secrets_issued"),
        }, tag="entra-rot")
