"""LDAP rotate never changes a password twice: a read account that cannot see the password
fails before the write, and a retry after a lost answer finds the change by fingerprint."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest
from pydantic import SecretStr

from activities.providers.base import (
    FRESH_SNAPSHOT,
    PermanentProviderError,
    TransientProviderError,
)
from activities.providers.ldap import LdapProvider
from stanch.config import ProviderSettings, Settings
from stanch.models import ActionStatus

from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW
from .retry import fail_after_write
from .test_ldap import BASE, USER_PW, can_bind, make_user

BLIND = (f"cn=blind-reader,{BASE}", "blind-reader-pw")


def provider(url: str, reader: tuple[str, str], drop: Path | None = None) -> LdapProvider:
    conf = ProviderSettings(
        type="ldap", options={"url": url, "base": BASE, "group_base": f"ou=groups,{BASE}",
                              "secret_drop_dir": str(drop) if drop else None},
        read_credentials={"bind_dn": SecretStr(reader[0]), "password": SecretStr(reader[1])},
        action_credentials={"bind_dn": SecretStr(LDAP_ROOT_DN),
                            "password": SecretStr(LDAP_ROOT_PW)})
    return LdapProvider.from_settings("corp", conf, Settings())


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Iterator[ldap3.Connection]:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


async def test_a_read_account_blind_to_passwords_fails_once_before_writing(
        ldap_url: str, admin: ldap3.Connection) -> None:
    p = provider(ldap_url, BLIND)
    ref = make_user(admin)
    assert (await p.snapshot(ref))["password_fingerprint"] is None
    with pytest.raises(PermanentProviderError) as caught:
        await p.rotate("act-blind", ref, {})
    assert caught.value.code == "VerifyImpossible" and not caught.value.retryable
    assert "read account cannot see userPassword" in str(caught.value)
    assert "stanch providers check corp" in str(caught.value)
    assert can_bind(ldap_url, ref.id, USER_PW), "the password must not have changed"


async def test_a_retry_after_a_lost_answer_changes_the_password_once(
        ldap_url: str, admin: ldap3.Connection, tmp_path: Path) -> None:
    p = provider(ldap_url, (LDAP_ROOT_DN, LDAP_ROOT_PW), tmp_path / "drop")
    ref = make_user(admin)
    before = await p.snapshot(ref)
    with fail_after_write(p) as fired, pytest.raises(TransientProviderError):
        await p.rotate("act-lost", ref, {FRESH_SNAPSHOT: before})
    assert fired
    written = await p.snapshot(ref)
    assert written["password_fingerprint"] != before["password_fingerprint"]
    [dropped] = (tmp_path / "drop").iterdir()
    # a fresh adapter (another worker) retries with the intent's snapshot only
    retry = await provider(ldap_url, (LDAP_ROOT_DN, LDAP_ROOT_PW)).rotate(
        "act-lost", ref, {"_snapshot": before})
    assert retry.status is ActionStatus.already
    assert (await p.snapshot(ref))["password_fingerprint"] == written["password_fingerprint"]
    assert can_bind(ldap_url, ref.id, dropped.read_text()), "the delivered password works"
