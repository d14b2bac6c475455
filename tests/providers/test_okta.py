"""Okta adapter against a stateful fake that validates every request against Okta's spec."""

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
from activities.providers.okta import OktaProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance, assert_same_fields
from .okta_fake import ORG, OktaFake, okta_spec

READ_TOKEN = "00read-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
ACTION_TOKEN = "00action-token-bbbbbbbbbbbbbbbbbbbbbbbbbbb"


def _conf(drop: Path | None = None) -> ProviderSettings:
    return ProviderSettings(
        type="okta",
        options={"org_url": ORG, "secret_drop_dir": str(drop) if drop else None},
        read_credentials={"token": SecretStr(READ_TOKEN)},
        action_credentials={"token": SecretStr(ACTION_TOKEN)})


@pytest.fixture(scope="module", autouse=True)
def _spec_loaded() -> None:
    okta_spec()  # parse the 36k-line contract once per module


@pytest.fixture
def fake() -> OktaFake:
    return OktaFake()


@pytest.fixture
async def provider(fake: OktaFake, tmp_path: Path) -> AsyncIterator[OktaProvider]:
    p = OktaProvider.from_settings("okta", _conf(tmp_path / "drop"), Settings(),
                                   transport=fake.transport())
    yield p
    await p.aclose()


def seed_user(fake: OktaFake) -> str:
    uid = fake.add_user()
    for name, kind in (("Admins", "OKTA_GROUP"), ("Deploy", "OKTA_GROUP"),
                       ("Everyone", "BUILT_IN"), ("AD Imported", "APP_GROUP")):
        gid = fake.add_group(f"{name}-{uid[-4:]}", kind)
        fake.members[gid].add(uid)
    for client in ("0oaclientA", "0oaclientA", "0oaclientB"):
        fake.add_grant(uid, client)
    return uid


def user(uid: str) -> IdentityRef:
    return IdentityRef(provider="okta", id=uid, kind=IdentityKind.user)


def app(app_id: str) -> IdentityRef:
    return IdentityRef(provider="okta", id=app_id, kind=IdentityKind.oauth_app)


class TestOktaConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.force_reauth})

    @pytest.fixture
    async def target(self, provider: OktaProvider, fake: OktaFake,
                     tmp_path: Path) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            if action is Action.rotate:
                app_id = fake.add_app()
                return Case(app(app_id), {"secret_id": next(iter(fake.app_secrets[app_id]))})
            return Case(user(seed_user(fake)),
                        {"grants": True} if action is Action.force_reauth else {})

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            fake.rate_limit(seconds=30)
            yield provider

        def secrets() -> Iterator[str]:
            yield from (READ_TOKEN, ACTION_TOKEN)
            yield from fake.all_client_secrets()

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                fault_retry_after=20, secrets=secrets)


async def test_reduce_scope_leaves_only_native_groups(provider: OktaProvider,
                                                      fake: OktaFake) -> None:
    uid = seed_user(fake)
    result = await provider.reduce_scope("rs", user(uid), {})
    left = {fake.groups[g]["type"] for g in fake.groups if uid in fake.members[g]}
    assert left == {"BUILT_IN", "APP_GROUP"}
    assert result.undo is not None and len(result.undo.params["groups"]) == 2


async def test_force_reauth_calls_sessions_with_oauth_tokens(provider: OktaProvider,
                                                             fake: OktaFake) -> None:
    uid = seed_user(fake)
    result = await provider.force_reauth("fr", user(uid), {"grants": ["0oaclientA"]})
    assert fake.sessions[uid] == 0 and fake.users[uid]["_revoked_tokens"] == 1
    assert {g["clientId"] for g in fake.grants[uid].values()} == {"0oaclientB"}
    assert len(result.before["grants"]) == 3  # read through two pages
    assert f"DELETE /api/v1/users/{uid}/sessions" in fake.seen
    assert result.irreversible and "cannot be undone" in result.message


async def test_revoke_refuses_non_active_user(provider: OktaProvider, fake: OktaFake) -> None:
    uid = fake.add_user(status="DEPROVISIONED")
    with pytest.raises(PermanentProviderError, match="DEPROVISIONED"):
        await provider.revoke("rv", user(uid), {})


async def test_rotate_at_two_secret_limit_deactivates_and_never_deletes(
        provider: OktaProvider, fake: OktaFake) -> None:
    app_id = fake.add_app(secrets_count=2)
    first, second = list(fake.app_secrets[app_id])
    result = await provider.rotate("rot", app(app_id), {"secret_id": first})
    assert result.after["secrets"] == {first: "INACTIVE", second: "ACTIVE"}
    assert f"Delete {second} by hand" in result.message
    await provider.undo("u", result)
    assert {k: v["status"] for k, v in fake.app_secrets[app_id].items()} == {
        first: "ACTIVE", second: "ACTIVE"}
    for secret in fake.app_secrets[app_id].values():
        secret["status"] = "INACTIVE"
    with pytest.raises(PermanentProviderError) as err:
        await provider.rotate("rot-2", app(app_id), {"credentials": [first]})
    assert err.value.code == "LimitExceeded"
    assert list(fake.app_secrets[app_id]) == [first, second]


async def test_rotate_delivers_secret_to_drop_dir(provider: OktaProvider, fake: OktaFake,
                                                  tmp_path: Path) -> None:
    app_id = fake.add_app()
    result = await provider.rotate("rot", app(app_id), {})
    new = result.after["new_secret_id"]
    dropped = next((tmp_path / "drop").glob(f"*{new}*")).read_text()
    assert dropped == fake.app_secrets[app_id][new]["client_secret"]


async def test_rate_limit_reset_becomes_retry_after(provider: OktaProvider,
                                                    fake: OktaFake) -> None:
    uid = seed_user(fake)
    fake.rate_limit(seconds=42)
    with pytest.raises(TransientProviderError) as err:
        await provider.snapshot(user(uid))
    assert err.value.code == "E0000047" and err.value.status == 429
    assert err.value.retry_after is not None and 38 <= err.value.retry_after <= 43
    assert READ_TOKEN not in str(err.value)
    assert (await provider.snapshot(user(uid)))["status"] == "ACTIVE"


async def test_not_found_is_permanent_with_okta_code(provider: OktaProvider) -> None:
    with pytest.raises(PermanentProviderError) as err:
        await provider.revoke("rv", user("00unknown"), {})
    assert err.value.code == "E0000007"


async def test_reads_use_read_token_and_writes_action_token(fake: OktaFake) -> None:
    tokens: list[tuple[str, str]] = []
    inner = fake.transport()

    async def spy(request: httpx.Request) -> httpx.Response:
        tokens.append((request.method, request.headers["Authorization"]))
        return await inner.handle_async_request(request)

    p = OktaProvider.from_settings("okta", _conf(), Settings(),
                                   transport=httpx.MockTransport(spy))
    uid = seed_user(fake)
    result = await p.revoke("rv", user(uid), {})
    await p.undo("u", result)
    assert {t for m, t in tokens if m == "GET"} == {f"SSWS {READ_TOKEN}"}
    assert {t for m, t in tokens if m != "GET"} == {f"SSWS {ACTION_TOKEN}"}
    await p.aclose()


async def test_token_from_secret_file(fake: OktaFake, tmp_path: Path) -> None:
    secret_file = tmp_path / "okta_token"
    secret_file.write_text(ACTION_TOKEN + "\n")
    conf = _conf()
    conf.action_credentials["token"] = SecretStr(f"file:{secret_file}")
    p = OktaProvider.from_settings("okta", conf, Settings(), transport=fake.transport())
    uid = seed_user(fake)
    before = await p.snapshot(user(uid))
    result = await p.revoke("rv", user(uid), {})
    await p.undo("u", result)
    assert_same_fields(before, await p.snapshot(user(uid)))
    await p.aclose()


async def test_contract_check_rejects_a_bad_request(fake: OktaFake) -> None:
    """The spec check is live: a request outside Okta's contract fails the test."""
    async with httpx.AsyncClient(transport=fake.transport(), base_url=ORG) as client:
        with pytest.raises(AssertionError, match="contract"):
            await client.post("/api/v1/users/00u1/lifecycle/explode",
                              headers={"Authorization": "SSWS x"})
        with pytest.raises(AssertionError, match="contract"):
            await client.delete("/api/v1/users/00u1/sessions", params={"oauthTokens": "maybe"},
                                headers={"Authorization": "SSWS x"})


async def test_repeat_of_suspend_is_already(provider: OktaProvider, fake: OktaFake) -> None:
    uid = seed_user(fake)
    await provider.revoke("rv", user(uid), {})
    again = await provider.revoke("rv-2", user(uid), {})
    assert again.status is ActionStatus.already


async def test_playbook_only_new_grants_by_name(provider: OktaProvider, fake: OktaFake) -> None:
    uid = seed_user(fake)
    admins = next(g for g in fake.groups if fake.groups[g]["profile"]["name"].startswith(
        "Admins") and uid in fake.members[g])
    name = fake.groups[admins]["profile"]["name"]
    result = await provider.reduce_scope("pb", user(uid), {"only_new_grants": True,
                                                          "new_grants": [name]})
    assert result.undo is not None and result.undo.params["groups"] == [admins]
    nothing = await provider.reduce_scope("pb2", user(uid), {"only_new_grants": True,
                                                            "new_grants": ["not-a-group"]})
    assert nothing.status is ActionStatus.already


async def test_an_id_cannot_change_the_path_it_is_put_in(fake: OktaFake) -> None:
    """An id from the inventory like ``x/../../apps/…`` stays one quoted path segment."""
    paths: list[str] = []
    inner = fake.transport()

    async def spy(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return await inner.handle_async_request(request)

    p = OktaProvider.from_settings("okta", _conf(), Settings(),
                                   transport=httpx.MockTransport(spy))
    hostile = "00u1/../../apps/0oa1?x=1#"
    with pytest.raises(PermanentProviderError):
        await p.revoke("rv", user(hostile), {})
    assert paths and all(path.startswith("/api/v1/users/00u1%2F..%2F..%2Fapps%2F0oa1%3Fx%3D1%23")
                         for path in paths), paths
    await p.aclose()
