"""OpenBao/Vault adapter against a real `bao server -dev`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
from pydantic import SecretStr

from activities.providers.base import IdentityProvider, PermanentProviderError
from activities.providers.vault import VaultProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance
from .conftest import BAO_ROOT
from .servers import closed_port

PASSWORD = "user-login-pw-123"


def _conf(url: str, drop: Path | None = None) -> ProviderSettings:
    return ProviderSettings(
        type="vault",
        options={"url": url, "timeout": 5, "secret_drop_dir": str(drop) if drop else None},
        read_credentials={"token": SecretStr(BAO_ROOT)},
        action_credentials={"token": SecretStr(BAO_ROOT)})


@pytest.fixture(scope="module")
def root(bao_url: str) -> hvac.Client:
    c = hvac.Client(url=bao_url, token=BAO_ROOT)
    mounts = c.sys.list_auth_methods()
    for kind in ("userpass", "approle"):
        if f"{kind}/" not in mounts:
            c.sys.enable_auth_method(kind)
    return c


@pytest.fixture(scope="module")
def drop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bao") / "drop"


@pytest.fixture(scope="module")
async def provider(bao_url: str, drop_dir: Path) -> AsyncIterator[VaultProvider]:
    p = VaultProvider.from_settings("bao", _conf(bao_url, drop_dir), Settings())
    yield p
    await p.aclose()


def make_entity(root: hvac.Client, url: str, logins: int = 2) -> IdentityRef:
    """An entity with two policies and a userpass alias that has logged in ``logins`` times."""
    name = f"e-{uuid.uuid4().hex[:8]}"
    root.write(f"auth/userpass/users/{name}", password=PASSWORD, token_policies="default")
    eid = root.secrets.identity.create_or_update_entity(
        name=name, policies=["ops-read", "ops-write"])["data"]["id"]
    accessor = root.sys.list_auth_methods()["userpass/"]["accessor"]
    root.secrets.identity.create_or_update_entity_alias(name=name, canonical_id=eid,
                                                        mount_accessor=accessor)
    for _ in range(logins):
        hvac.Client(url=url).auth.userpass.login(name, PASSWORD)
    return IdentityRef(provider="bao", id=eid, kind=IdentityKind.user)


def make_approle(root: hvac.Client) -> tuple[IdentityRef, str]:
    role = f"svc-{uuid.uuid4().hex[:8]}"
    root.auth.approle.create_or_update_approle(role, token_policies=["default"])
    made = root.auth.approle.generate_secret_id(role)["data"]
    return (IdentityRef(provider="bao", id=f"approle/{role}", kind=IdentityKind.service_account),
            made["secret_id_accessor"])


class TestVaultConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.force_reauth, Action.rotate})

    @pytest.fixture
    async def target(self, provider: VaultProvider, root: hvac.Client, bao_url: str,
                     drop_dir: Path) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            if action is Action.rotate:
                ref, accessor = make_approle(root)
                return Case(ref, {"secret_id_accessor": accessor})
            return Case(make_entity(root, bao_url))

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            broken = VaultProvider.from_settings(
                "bao", _conf(f"http://127.0.0.1:{closed_port()}"), Settings())
            yield broken
            await broken.aclose()

        def secrets() -> Iterator[str]:
            yield BAO_ROOT
            yield PASSWORD
            if drop_dir.exists():
                yield from (f.read_text() for f in drop_dir.iterdir())

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                secrets=secrets)


async def test_force_reauth_kills_tokens(provider: VaultProvider, root: hvac.Client,
                                         bao_url: str) -> None:
    ref = make_entity(root, bao_url, logins=0)
    name = root.secrets.identity.read_entity(ref.id)["data"]["name"]
    token = hvac.Client(url=bao_url).auth.userpass.login(name, PASSWORD)["auth"]["client_token"]
    user = hvac.Client(url=bao_url, token=token)
    assert user.is_authenticated()
    result = await provider.force_reauth("fr", ref, {})
    assert len(result.before["token_accessors"]) == 1 and len(result.before["leases"]) == 1
    assert result.after["token_accessors"] == [] and result.after["leases"] == []
    assert not user.is_authenticated()
    assert token not in result.model_dump_json()


async def test_revoke_disables_entity_tokens(provider: VaultProvider, root: hvac.Client,
                                             bao_url: str) -> None:
    ref = make_entity(root, bao_url, logins=0)
    name = root.secrets.identity.read_entity(ref.id)["data"]["name"]
    token = hvac.Client(url=bao_url).auth.userpass.login(name, PASSWORD)["auth"]["client_token"]
    user = hvac.Client(url=bao_url, token=token)
    result = await provider.revoke("rv", ref, {})
    assert result.after["disabled"] is True
    with pytest.raises(hvac.exceptions.Forbidden):
        user.auth.token.lookup_self()
    await provider.undo("u", result)
    assert user.auth.token.lookup_self()["data"]["entity_id"] == ref.id


async def test_reduce_scope_by_name_and_chosen_policies(provider: VaultProvider,
                                                        root: hvac.Client, bao_url: str) -> None:
    ref = make_entity(root, bao_url, logins=0)
    name = root.secrets.identity.read_entity(ref.id)["data"]["name"]
    by_name = IdentityRef(provider="bao", id=f"entity/name/{name}", kind=IdentityKind.user)
    result = await provider.reduce_scope("rs", by_name, {"policies": ["ops-write"]})
    assert result.after["policies"] == ["ops-read"]
    root.secrets.identity.update_entity(ref.id, policies=["ops-read", "added-later"])
    undone = await provider.undo("u", result)
    assert undone.after["policies"] == ["added-later", "ops-read", "ops-write"]


async def test_rotate_secret_id_is_irreversible_and_secret_stays_out(
    provider: VaultProvider, root: hvac.Client, drop_dir: Path
) -> None:
    ref, old = make_approle(root)
    result = await provider.rotate("rot", ref, {})
    new = result.after["new_secret_id_accessor"]
    assert result.after["secret_id_accessors"] == [new]
    assert result.irreversible and result.undo is None and "cannot be undone" in result.message
    secret = next(f for f in drop_dir.iterdir() if new in f.name).read_text()
    role_id = root.auth.approle.read_role_id(ref.id.split("/", 1)[1])["data"]["role_id"]
    login = hvac.Client(url=root.url).auth.approle.login(role_id, secret)
    assert login["auth"]["client_token"]
    assert secret not in result.model_dump_json()
    with pytest.raises(PermanentProviderError, match="irreversible"):
        await provider.undo("u", result)
    assert (await provider.rotate("rot2", ref, {"secret_id_accessor": old})).status is \
        ActionStatus.already


async def test_wrong_identity_kind_is_refused(provider: VaultProvider,
                                              root: hvac.Client) -> None:
    ref, _ = make_approle(root)
    for call in (provider.reduce_scope, provider.force_reauth, provider.revoke):
        with pytest.raises(PermanentProviderError) as err:
            await call("x", ref, {})
        assert err.value.code == "Unsupported"
    entity = IdentityRef(provider="bao", id="no-such-entity", kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError):
        await provider.snapshot(entity)


async def test_bad_token_is_permanent(bao_url: str) -> None:
    conf = _conf(bao_url)
    conf.read_credentials["token"] = SecretStr("not-a-valid-token")
    p = VaultProvider.from_settings("bao", conf, Settings())
    with pytest.raises(PermanentProviderError) as err:
        await p.snapshot(IdentityRef(provider="bao", id="approle/x", kind=IdentityKind.token))
    assert err.value.code == "Forbidden"
    assert "not-a-valid-token" not in str(err.value)
    await p.aclose()

