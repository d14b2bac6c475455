"""LDAP adapter against a private slapd (mdb + ppolicy) started by the tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import ldap3
import pytest
from pydantic import SecretStr

from activities.providers.base import IdentityProvider, PermanentProviderError
from activities.providers.ldap import LdapProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionStatus, IdentityKind, IdentityRef

from .conformance import Case, ConformanceTarget, ProviderConformance
from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW
from .servers import closed_port

BASE = "dc=stanch,dc=test"
USER_PW = "user-initial-pw-1"


def _conf(url: str, drop: Path | None = None) -> ProviderSettings:
    creds = {"bind_dn": SecretStr(LDAP_ROOT_DN), "password": SecretStr(LDAP_ROOT_PW)}
    return ProviderSettings(
        type="ldap",
        options={"url": url, "base": BASE, "group_base": f"ou=groups,{BASE}", "timeout": 3,
                 "secret_drop_dir": str(drop) if drop else None},
        read_credentials=creds, action_credentials=creds)


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Iterator[ldap3.Connection]:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
def drop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ldap") / "drop"


@pytest.fixture(scope="module")
async def provider(ldap_url: str, drop_dir: Path) -> AsyncIterator[LdapProvider]:
    p = LdapProvider.from_settings("ldap", _conf(ldap_url, drop_dir), Settings())
    yield p
    await p.aclose()


def make_user(admin: ldap3.Connection) -> IdentityRef:
    """A person in two groups that each also hold another member."""
    uid = f"u{uuid.uuid4().hex[:8]}"
    dn = f"uid={uid},ou=people,{BASE}"
    assert admin.add(dn, ["inetOrgPerson"], {"cn": uid, "sn": uid, "userPassword": USER_PW})
    for g in ("admins", "deploy"):
        assert admin.add(f"cn={g}-{uid},ou=groups,{BASE}", ["groupOfNames"],
                         {"cn": f"{g}-{uid}", "member": [dn, f"cn=admin,{BASE}"]})
    return IdentityRef(provider="ldap", id=dn, kind=IdentityKind.user)


def can_bind(url: str, dn: str, password: str) -> bool:
    return bool(ldap3.Connection(url, dn, password).bind())


class TestLdapConformance(ProviderConformance):
    ACTIONS = (Action.reduce_scope, Action.rotate, Action.revoke)
    IRREVERSIBLE = frozenset({Action.rotate})

    @pytest.fixture
    async def target(self, provider: LdapProvider, admin: ldap3.Connection,
                     drop_dir: Path) -> AsyncIterator[ConformanceTarget]:
        async def prepare(action: Action) -> Case:
            ref = make_user(admin)
            params = {}
            if action is Action.rotate:
                snap = await provider.snapshot(ref)
                params["password_fingerprint"] = snap["password_fingerprint"]
            return Case(ref, params)

        @asynccontextmanager
        async def faulty() -> AsyncIterator[IdentityProvider]:
            yield LdapProvider.from_settings(
                "ldap", _conf(f"ldap://127.0.0.1:{closed_port()}"), Settings())

        def secrets() -> Iterator[str]:
            yield from (LDAP_ROOT_PW, USER_PW)
            if drop_dir.exists():
                yield from (f.read_text() for f in drop_dir.iterdir())

        yield ConformanceTarget(provider=provider, prepare=prepare, faulty=faulty,
                                secrets=secrets)


async def test_revoke_locks_binds_and_undo_unlocks(provider: LdapProvider,
                                                   admin: ldap3.Connection,
                                                   ldap_url: str) -> None:
    ref = make_user(admin)
    assert can_bind(ldap_url, ref.id, USER_PW)
    result = await provider.revoke("rv", ref, {})
    assert result.after["locked_time"] == "000001010000Z"
    assert not can_bind(ldap_url, ref.id, USER_PW)
    await provider.undo("u", result)
    assert can_bind(ldap_url, ref.id, USER_PW)


async def test_rotate_changes_password_and_is_irreversible(
    provider: LdapProvider, admin: ldap3.Connection, ldap_url: str, drop_dir: Path
) -> None:
    ref = make_user(admin)
    result = await provider.rotate("rot", ref, {})
    assert result.irreversible and "old hash was not captured" in result.message
    assert not can_bind(ldap_url, ref.id, USER_PW)
    new_pw = next(f for f in drop_dir.iterdir() if "uid" in f.name
                  and ref.id.split(",")[0].split("=")[1] in f.name).read_text()
    assert can_bind(ldap_url, ref.id, new_pw)
    assert new_pw not in result.model_dump_json()
    with pytest.raises(PermanentProviderError, match="irreversible"):
        await provider.undo("u", result)


async def test_reduce_scope_chosen_group_by_cn(provider: LdapProvider,
                                               admin: ldap3.Connection) -> None:
    ref = make_user(admin)
    uid = ref.id.split(",")[0].split("=")[1]
    result = await provider.reduce_scope("rs", ref, {"groups": [f"admins-{uid}"]})
    assert result.after["groups"] == [f"cn=deploy-{uid},ou=groups,{BASE}"]
    again = await provider.reduce_scope("rs2", ref, {"groups": [f"admins-{uid}"]})
    assert again.status is ActionStatus.already


async def test_last_member_removal_is_explained(provider: LdapProvider,
                                                admin: ldap3.Connection) -> None:
    uid = f"solo{uuid.uuid4().hex[:6]}"
    dn = f"uid={uid},ou=people,{BASE}"
    admin.add(dn, ["inetOrgPerson"], {"cn": uid, "sn": uid})
    admin.add(f"cn=only-{uid},ou=groups,{BASE}", ["groupOfNames"],
              {"cn": f"only-{uid}", "member": [dn]})
    ref = IdentityRef(provider="ldap", id=dn, kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError, match="at least one member"):
        await provider.reduce_scope("rs", ref, {})


async def test_unsupported_and_missing(provider: LdapProvider) -> None:
    ref = IdentityRef(provider="ldap", id=f"uid=ghost,ou=people,{BASE}", kind=IdentityKind.user)
    with pytest.raises(PermanentProviderError, match="noSuchObject"):
        await provider.snapshot(ref)
    with pytest.raises(PermanentProviderError, match="no sessions"):
        await provider.force_reauth("x", ref, {})


async def test_wrong_bind_password_is_permanent_and_not_echoed(ldap_url: str) -> None:
    conf = _conf(ldap_url)
    conf.read_credentials["password"] = SecretStr("wrong-password-xyz")
    p = LdapProvider.from_settings("ldap", conf, Settings())
    with pytest.raises(PermanentProviderError) as err:
        await p.snapshot(IdentityRef(provider="ldap", id=BASE, kind=IdentityKind.user))
    assert "invalidCredentials" in str(err.value)
    assert "wrong-password-xyz" not in str(err.value)


async def test_a_credential_revoke_is_refused_not_widened(provider: LdapProvider,
                                                          admin: ldap3.Connection) -> None:
    ref = make_user(admin)
    with pytest.raises(PermanentProviderError, match="only the whole identity"):
        await provider.revoke("rv", ref, {"target": "credential", "credentials": ["k1"]})
    assert (await provider.snapshot(ref))["locked"] is False
