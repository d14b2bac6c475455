"""Entra (Microsoft Graph) adapter against a stateful Graph fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from activities.providers.base import (
    IdentityProvider,
    PermanentProviderError,
    TransientProviderError,
)
from activities.providers.entra import EntraProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance, assert_same_fields
from .graph_fake import GraphFake

READ_SECRET = "read-client-secret-value-1234"
ACTION_SECRET = "action-client-secret-value-5678"
RESOURCE = "5b3e5a0c-0000-4000-8000-000000000001"


def _conf(drop: Path | None = None) -> ProviderSettings:
    return ProviderSettings(
        type="entra", options={"secret_drop_dir": str(drop) if drop else None},
        read_credentials={"tenant_id": SecretStr("contoso"), "client_id": SecretStr("reader"),
                          "client_secret": SecretStr(READ_SECRET)},
        action_credentials={"tenant_id": SecretStr("contoso"),
                            "client_id": SecretStr("responder"),
                            "client_secret": SecretStr(ACTION_SECRET)})


@pytest.fixture
def fake() -> GraphFake:
    f = GraphFake()
    f.add_client("reader", READ_SECRET)
    f.add_client("responder", ACTION_SECRET)
    return f


@pytest.fixture
async def provider(fake: GraphFake, tmp_path: Path) -> AsyncIterator[EntraProvider]:
    p = EntraProvider.from_settings("entra", _conf(tmp_path / "drop"), Settings(),
                                    transport=fake.transport())
    yield p
    await p.aclose()


def seed(fake: GraphFake, kind: IdentityKind = IdentityKind.user) -> IdentityRef:
    oid = fake.add_user() if kind is IdentityKind.user else fake.add_service_principal()
    for name in ("Admins", "Deploy", "Finance"):
        fake.members[fake.add_group(f"{name}-{oid[:4]}")].add(oid)
    fake.members[fake.add_group(f"Dynamic-{oid[:4]}", dynamic=True)].add(oid)
    fake.assign_role(oid, RESOURCE, "role-reader")
    fake.assign_role(oid, RESOURCE, "role-writer")
    return IdentityRef(provider="entra", id=oid, kind=kind)


class TestEntraConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.force_reauth, Action.rotate})

    @pytest.fixture
    async def target(self, provider: EntraProvider,
                     fake: GraphFake) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            if action is Action.rotate:
                ref = seed(fake, IdentityKind.service_principal)
                key = fake.objects[ref.id]["passwordCredentials"][0]["keyId"]
                return Case(ref, {"key_id": key})
            return Case(seed(fake))

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            fake.throttle(429, retry_after=7)
            yield provider

        def secrets() -> Iterator[str]:
            yield from (READ_SECRET, ACTION_SECRET)
            yield from fake.secrets_issued
            yield from fake.tokens

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                fault_retry_after=7, secrets=secrets)


async def test_reduce_scope_leaves_dynamic_groups_and_reposts_roles(
    provider: EntraProvider, fake: GraphFake
) -> None:
    ref = seed(fake)
    before = await provider.snapshot(ref)
    assert len(before["groups"]) == 4  # read through @odata.nextLink pages
    result = await provider.reduce_scope("rs", ref, {})
    assert list(result.after["groups"]) == before["dynamic_groups"]
    assert result.after["app_roles"] == []
    await provider.undo("u", result)
    assert_same_fields(before, await provider.snapshot(ref))
    reposted = [a for a in fake.assignments.values() if a["principalId"] == ref.id]
    assert len(reposted) == 2  # new ids, same resource and role


async def test_readd_existing_member_is_already(provider: EntraProvider,
                                                fake: GraphFake) -> None:
    ref = seed(fake)
    result = await provider.reduce_scope("rs", ref, {"groups": [], "app_roles": False})
    assert result.status is ActionStatus.already
    scoped = await provider.reduce_scope("rs2", ref, {"app_roles": False})
    assert scoped.undo is not None
    gid = scoped.undo.params["groups"][0]
    fake.members[gid].add(ref.id)  # someone re-added one already
    undone = await provider.undo("u", scoped)  # the 400 "already exist" is not an error
    assert undone.status is ActionStatus.undone
    assert all(ref.id in fake.members[g] for g in scoped.undo.params["groups"])


async def test_force_reauth_moves_sessions_valid_from(provider: EntraProvider,
                                                      fake: GraphFake) -> None:
    ref = seed(fake)
    result = await provider.force_reauth("fr", ref, {})
    assert result.after["signInSessionsValidFromDateTime"] > \
        result.before["signInSessionsValidFromDateTime"]
    assert f"POST /v1.0/users/{ref.id}/revokeSignInSessions" in fake.seen
    sp = seed(fake, IdentityKind.service_principal)
    with pytest.raises(PermanentProviderError, match="users only"):
        await provider.force_reauth("fr2", sp, {})


async def test_revoke_service_principal(provider: EntraProvider, fake: GraphFake) -> None:
    sp = seed(fake, IdentityKind.service_principal)
    result = await provider.revoke("rv", sp, {})
    assert fake.objects[sp.id]["accountEnabled"] is False
    await provider.undo("u", result)
    assert fake.objects[sp.id]["accountEnabled"] is True


async def test_rotate_is_irreversible_and_secret_only_in_drop(
    provider: EntraProvider, fake: GraphFake, tmp_path: Path
) -> None:
    sp = seed(fake, IdentityKind.service_principal)
    result = await provider.rotate("rot", sp, {})
    new = result.after["new_key_id"]
    assert result.after["password_key_ids"] == [new]
    assert result.irreversible and "cannot be undone" in result.message
    dropped = next((tmp_path / "drop").glob(f"*{new}*")).read_text()
    assert dropped == fake.secrets_issued[-1]
    assert dropped not in result.model_dump_json()


async def test_503_retry_after_is_transient(provider: EntraProvider, fake: GraphFake) -> None:
    ref = seed(fake)
    fake.throttle(503, retry_after=3)
    with pytest.raises(TransientProviderError) as err:
        await provider.revoke("rv", ref, {})
    assert err.value.status == 503 and err.value.retry_after == 3


async def test_errors_name_graph_code(provider: EntraProvider) -> None:
    ghost = IdentityRef(provider="entra", id="00000000-0000-0000-0000-000000000000",
                        kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError) as err:
        await provider.snapshot(ghost)
    assert err.value.code == "Request_ResourceNotFound"


async def test_reads_and_writes_use_separate_apps(provider: EntraProvider,
                                                  fake: GraphFake) -> None:
    ref = seed(fake)
    await provider.revoke("rv", ref, {})
    assert sorted(set(fake.tokens.values())) == ["reader", "responder"]


async def test_bad_client_secret_is_permanent_and_not_echoed(fake: GraphFake) -> None:
    conf = _conf()
    conf.read_credentials["client_secret"] = SecretStr("wrong-secret-value")
    p = EntraProvider.from_settings("entra", conf, Settings(), transport=fake.transport())
    with pytest.raises(PermanentProviderError) as err:
        await p.snapshot(IdentityRef(provider="entra", id=fake.add_user(),
                                     kind=IdentityKind.user))
    assert err.value.code == "invalid_client" and "wrong-secret" not in str(err.value)
    await p.aclose()


async def test_static_token_credential(fake: GraphFake) -> None:
    conf = ProviderSettings(type="entra", options={},
                            read_credentials={"token": SecretStr("static-abc")})
    p = EntraProvider.from_settings("entra", conf, Settings(), transport=fake.transport())
    oid = fake.add_user()
    snap = await p.snapshot(IdentityRef(provider="entra", id=oid, kind=IdentityKind.user))
    assert snap["accountEnabled"] is True
    await p.aclose()


async def test_an_id_cannot_change_the_path_it_is_put_in(fake: GraphFake,
                                                         tmp_path: Path) -> None:
    """An object id like ``x/../../servicePrincipals/…`` stays one quoted path segment."""
    paths: list[str] = []
    inner = fake.transport()

    async def spy(request: httpx.Request) -> httpx.Response:
        if request.url.host == "graph.microsoft.com":
            paths.append(request.url.raw_path.decode())
        return await inner.handle_async_request(request)

    p = EntraProvider.from_settings("entra", _conf(tmp_path / "drop"), Settings(),
                                    transport=httpx.MockTransport(spy))
    hostile = IdentityRef(provider="entra", id="u1/../../servicePrincipals/sp1",
                          kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError):
        await p.revoke("rv", hostile, {})
    assert paths and all("u1%2F..%2F..%2FservicePrincipals%2Fsp1" in path for path in paths), \
        paths
    await p.aclose()
