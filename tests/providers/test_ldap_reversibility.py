"""LDAP from a realistic starting state: contain through every rung, roll back, and only
the declared losses differ (slapd with ppolicy)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import ldap3
import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.containment import ContainmentActivities
from activities.providers.ldap import LdapProvider
from stanch.audit import SqliteAuditStore
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionRequest, IdentityKind, IdentityRef

from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW
from .reversibility import Dump, assert_rollback_exact

BASE = "dc=stanch,dc=test"
_ATTRS = ["*", "pwdFailureTime", "pwdAccountLockedTime", "pwdChangedTime"]


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Iterator[ldap3.Connection]:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


@pytest.fixture(scope="module")
async def provider(ldap_url: str) -> AsyncIterator[LdapProvider]:
    creds = {"bind_dn": SecretStr(LDAP_ROOT_DN), "password": SecretStr(LDAP_ROOT_PW)}
    conf = ProviderSettings(type="ldap", options={"url": ldap_url, "base": BASE,
                                                  "group_base": f"ou=groups,{BASE}"},
                            read_credentials=creds, action_credentials=creds)
    p = LdapProvider.from_settings("ldap", conf, Settings())
    yield p
    await p.aclose()


def _person(admin: ldap3.Connection, uid: str, password: str) -> str:
    dn = f"uid={uid},ou=people,{BASE}"
    assert admin.add(dn, ["inetOrgPerson"], {
        "cn": uid, "sn": uid, "userPassword": password, "mail": f"{uid}@example.test",
        "title": "engineer", "description": "on call"})
    return dn


def _fail_binds(url: str, dn: str, times: int) -> None:
    for _ in range(times):
        assert not ldap3.Connection(url, dn, "wrong-password").bind()


def realistic(admin: ldap3.Connection, url: str) -> tuple[IdentityRef, str]:
    """Alice with attributes, a password, failed logins, three groups shared with Bob (who
    has his own failed logins); one group Alice is not in."""
    tag = uuid.uuid4().hex[:6]
    alice = _person(admin, f"alice{tag}", "alice-pw-1")
    bob = _person(admin, f"bob{tag}", "bob-pw-1")
    for g in ("admins", "deploy", "readers"):
        assert admin.add(f"cn={g}-{tag},ou=groups,{BASE}", ["groupOfNames"],
                         {"cn": f"{g}-{tag}", "member": [alice, bob]})
    assert admin.add(f"cn=others-{tag},ou=groups,{BASE}", ["groupOfNames"],
                     {"cn": f"others-{tag}", "member": [bob]})
    _fail_binds(url, alice, 2)
    _fail_binds(url, bob, 1)
    return IdentityRef(provider="ldap", id=alice, kind=IdentityKind.user), tag


def dumper(admin: ldap3.Connection, tag: str):  # type: ignore[no-untyped-def]
    async def dump() -> Dump:
        admin.search(BASE, f"(|(uid=*{tag})(cn=*-{tag}))", attributes=_ATTRS)
        out: Dump = {}
        for e in admin.response:
            for attr, values in e["raw_attributes"].items():
                if values:
                        out[f"{e['dn']}|{attr}"] = sorted(v.decode() for v in values)
        return out
    return dump


async def test_every_rung_then_rollback_differs_only_in_declared_losses(
        provider: LdapProvider, admin: ldap3.Connection, ldap_url: str) -> None:
    ref, tag = realistic(admin, ldap_url)
    snap = await provider.snapshot(ref)
    assert len(snap["failed_logins"]) == 2
    steps = [(Action.reduce_scope, {"groups": [f"admins-{tag}", f"deploy-{tag}"]}),
             (Action.rotate, {}), (Action.revoke, {})]
    alice = ref.id
    before, after, results = await assert_rollback_exact(
        "ldap", provider, ref, steps, dumper(admin, tag), {
            "old_secret": lambda p: p in (f"{alice}|userPassword", f"{alice}|pwdChangedTime"),
            "failed_login_history": lambda p: p == f"{alice}|pwdFailureTime",
        }, tag=f"ldap-{tag}")
    # the password change discarded the failed-login record; it is in the captured state
    rotate = results[1]
    assert rotate.before["failed_logins"] == before[f"{alice}|pwdFailureTime"]
    assert f"{alice}|pwdFailureTime" not in after


async def test_revoke_alone_loses_only_the_failed_login_history_it_captured(
        provider: LdapProvider, admin: ldap3.Connection, ldap_url: str) -> None:
    ref, tag = realistic(admin, ldap_url)
    alice = ref.id
    before, _, [revoke] = await assert_rollback_exact(
        "ldap", provider, ref, [(Action.revoke, {})], dumper(admin, tag), {
            "failed_login_history": lambda p: p == f"{alice}|pwdFailureTime",
        }, tag=f"ldap-rv-{tag}")
    assert revoke.before["failed_logins"] == before[f"{alice}|pwdFailureTime"]
    assert len(revoke.before["failed_logins"]) == 2
    assert "2 pwdFailureTime values" in revoke.message


async def test_failed_logins_are_in_the_audit_before_revoke_and_before_its_undo(
        admin: ldap3.Connection, ldap_url: str, tmp_path: Path) -> None:
    """Through the activities: the revoke's intent and the undo's intent both carry the
    failed-login record the unlock then clears (ppolicy does not count binds against a
    locked account, so a try while locked adds nothing)."""
    ref, _ = realistic(admin, ldap_url)
    creds = {"bind_dn": SecretStr(LDAP_ROOT_DN), "password": SecretStr(LDAP_ROOT_PW)}
    settings = Settings(state_dir=tmp_path, providers={"ldap": ProviderSettings(
        type="ldap", options={"url": ldap_url, "base": BASE,
                              "group_base": f"ou=groups,{BASE}"},
        read_credentials=creds, action_credentials=creds)})
    store = SqliteAuditStore(tmp_path / "audit.db")
    acts = ContainmentActivities(settings, store)
    env = ActivityEnvironment()
    try:
        req = ActionRequest(action_id="act-lock", workflow_id="wf-1", identity=ref,
                            action=Action.revoke)
        result = await env.run(acts.apply_action, req)
        _fail_binds(ldap_url, ref.id, 1)  # while locked
        await env.run(acts.undo_action, ActionRequest(
            action_id="act-lock-undo", workflow_id="wf-1", identity=ref, action=Action.revoke,
            params={"original": result.model_dump(mode="json")}))
        intent = store.find("act-lock:intent")
        undo_intent = store.find("act-lock-undo:intent")
        assert intent is not None and undo_intent is not None
        assert len(intent.data["snapshot"]["failed_logins"]) == 2
        assert undo_intent.data["snapshot"]["failed_logins"] == \
            intent.data["snapshot"]["failed_logins"]
        assert (await acts.providers.get("ldap").snapshot(ref))["failed_logins"] == []
    finally:
        await acts.providers.aclose()
        store.close()
