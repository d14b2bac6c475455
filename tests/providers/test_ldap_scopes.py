"""LDAP grant_scope/revoke_scope against a private slapd (time-bound elevation)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import ldap3
import pytest
from pydantic import SecretStr

from activities.providers.base import PermanentProviderError, ScopeGrantingProvider
from activities.providers.ldap import LdapProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import IdentityKind, IdentityRef

from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW

BASE = "dc=stanch,dc=test"
GROUPS = f"ou=groups,{BASE}"
PLACEHOLDER = f"cn=admin,{BASE}"
READER_PW = "reader-pw-123"


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Iterator[ldap3.Connection]:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
def reader(admin: ldap3.Connection) -> str:
    """An ordinary entry: it may read (slapd's default ACL) but not write."""
    dn = f"uid=reader-{uuid.uuid4().hex[:6]},ou=people,{BASE}"
    assert admin.add(dn, ["inetOrgPerson"], {"cn": "r", "sn": "r", "userPassword": READER_PW})
    return dn


def _provider(url: str, read: tuple[str, str], action: tuple[str, str]) -> LdapProvider:
    return LdapProvider.from_settings("ldap", ProviderSettings(
        type="ldap", options={"url": url, "base": BASE, "group_base": GROUPS, "timeout": 3},
        read_credentials={"bind_dn": SecretStr(read[0]), "password": SecretStr(read[1])},
        action_credentials={"bind_dn": SecretStr(action[0]),
                            "password": SecretStr(action[1])}), Settings())


@pytest.fixture(scope="module")
async def provider(ldap_url: str, reader: str) -> AsyncIterator[LdapProvider]:
    p = _provider(ldap_url, (reader, READER_PW), (LDAP_ROOT_DN, LDAP_ROOT_PW))
    yield p
    await p.aclose()


def make_user(admin: ldap3.Connection) -> IdentityRef:
    uid = f"u{uuid.uuid4().hex[:8]}"
    dn = f"uid={uid},ou=people,{BASE}"
    assert admin.add(dn, ["inetOrgPerson"], {"cn": uid, "sn": uid, "userPassword": "pw-1"})
    return IdentityRef(provider="ldap", id=dn, kind=IdentityKind.user)


def make_group(admin: ldap3.Connection, members: list[str]) -> str:
    cn = f"prod-db-{uuid.uuid4().hex[:6]}"
    assert admin.add(f"cn={cn},{GROUPS}", ["groupOfNames"],
                     {"cn": cn, "member": [PLACEHOLDER, *members]})
    return cn


def members(admin: ldap3.Connection, cn: str) -> set[str]:
    assert admin.search(f"cn={cn},{GROUPS}", "(objectClass=*)", search_scope=ldap3.BASE,
                        attributes=["member"])
    return {str(m).lower() for m in admin.entries[0].member.values}


def test_is_a_scope_granting_provider(provider: LdapProvider) -> None:
    assert isinstance(provider, ScopeGrantingProvider)


@pytest.mark.parametrize("form", ["cn", "dn"])
async def test_grant_then_revoke_roundtrip(provider: LdapProvider, admin: ldap3.Connection,
                                           form: str) -> None:
    ref = make_user(admin)
    cn = make_group(admin, [])
    scope = cn if form == "cn" else f"CN={cn}, OU=groups, {BASE}"  # any DN spelling

    assert await provider.grant_scope("el-1", ref, scope) is True
    assert members(admin, cn) == {PLACEHOLDER, ref.id.lower()}
    assert await provider.grant_scope("el-2", ref, scope) is False
    assert await provider.revoke_scope("el-3", ref, scope) is True
    assert members(admin, cn) == {PLACEHOLDER}
    assert await provider.revoke_scope("el-4", ref, scope) is False
    assert members(admin, cn) == {PLACEHOLDER}


async def test_preexisting_membership(provider: LdapProvider, admin: ldap3.Connection) -> None:
    ref = make_user(admin)
    cn = make_group(admin, [ref.id])
    assert await provider.grant_scope("el-1", ref, cn) is False
    assert members(admin, cn) == {PLACEHOLDER, ref.id.lower()}


async def test_writes_use_the_action_bind(ldap_url: str, admin: ldap3.Connection,
                                          reader: str) -> None:
    ref = make_user(admin)
    cn = make_group(admin, [])
    swapped = _provider(ldap_url, (LDAP_ROOT_DN, LDAP_ROOT_PW), (reader, READER_PW))
    with pytest.raises(PermanentProviderError) as err:
        await swapped.grant_scope("el-1", ref, cn)
    assert err.value.code == "insufficientAccessRights"
    assert members(admin, cn) == {PLACEHOLDER}


async def test_unknown_group_is_permanent(provider: LdapProvider,
                                          admin: ldap3.Connection) -> None:
    ref = make_user(admin)
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-1", ref, f"missing-{uuid.uuid4().hex[:6]}")
    assert err.value.code == "noSuchObject"
    with pytest.raises(PermanentProviderError) as err:
        await provider.grant_scope("el-2", ref, "cn=a=b=c,,")
    assert err.value.code == "InvalidScope"


async def test_holds_scope_by_cn_and_dn(provider: LdapProvider,
                                        admin: ldap3.Connection) -> None:
    ref = make_user(admin)
    cn = make_group(admin, [])
    spellings = [cn, f"cn={cn},{GROUPS}", f"CN={cn}, OU=groups, {BASE}"]
    before = await provider.snapshot(ref)
    assert not any(provider.holds_scope(before, s) for s in spellings)
    await provider.grant_scope("el-1", ref, cn)
    after = await provider.snapshot(ref)
    assert all(provider.holds_scope(after, s) for s in spellings)
