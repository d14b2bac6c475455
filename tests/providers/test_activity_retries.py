"""The action activity end to end on slapd: an answer lost after the write, then Temporal's
retry (attempt 2) or a reset workflow's attempt 1 → one password change; a read account
blind to passwords → a permanent failure on the first attempt, audited, nothing written."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ldap3
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.containment import ContainmentActivities
from activities.providers.registry import ProviderPool
from stanch.audit import SqliteAuditStore
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionRequest, ActionStatus, AuditType

from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW
from .retry import fail_after_write
from .test_ldap import BASE, USER_PW, can_bind, make_user


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Any:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


def _settings(tmp_path: Path, url: str, reader: tuple[str, str]) -> Settings:
    return Settings(state_dir=tmp_path, providers={"corp": ProviderSettings(
        type="ldap", options={"url": url, "base": BASE, "group_base": f"ou=groups,{BASE}",
                              "secret_drop_dir": str(tmp_path / "drop")},
        read_credentials={"bind_dn": SecretStr(reader[0]), "password": SecretStr(reader[1])},
        action_credentials={"bind_dn": SecretStr(LDAP_ROOT_DN),
                            "password": SecretStr(LDAP_ROOT_PW)})})


def _env(attempt: int) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


@pytest.mark.parametrize("again", [2, 1], ids=["retry", "reset-workflow-reruns-the-step"])
async def test_lost_answer_then_again_changes_the_password_once(
        tmp_path: Path, ldap_url: str, admin: ldap3.Connection, again: int) -> None:
    """The answer to the write is lost; the action runs again under the same action id, as
    Temporal's retry (attempt 2) or as attempt 1 of a reset workflow re-running the step. The
    intent recorded by the first run wins (on attempt 1 over the before-state read beside
    its lookup, which is dropped): nothing changes twice, the evidence is recorded once."""
    settings = _settings(tmp_path, ldap_url, (LDAP_ROOT_DN, LDAP_ROOT_PW))
    store = SqliteAuditStore(tmp_path / "audit.db")
    pool = ProviderPool(settings)
    acts = ContainmentActivities(settings, store, pool)
    ref = make_user(admin).model_copy(update={"provider": "corp"})
    req = ActionRequest(action_id=f"act-lost-answer-{again}", workflow_id="wf-1", identity=ref,
                        action=Action.rotate, params={"credential": "password"})
    with fail_after_write(pool.get("corp")) as fired, pytest.raises(ApplicationError) as first:
        await _env(1).run(acts.apply_action, req)
    assert fired and not first.value.non_retryable
    [intent] = store.query(types=[AuditType.action_intent])
    [dropped] = (tmp_path / "drop").iterdir()
    password = dropped.read_text()
    result = await _env(again).run(acts.apply_action, req)
    assert result.status is ActionStatus.already
    assert can_bind(ldap_url, ref.id, password), "changed once: the delivered password works"
    records = store.query(types=[AuditType.action_intent, AuditType.action_result])
    assert [r.phase for r in records if r.action_id == req.action_id] == ["intent", "result"]
    assert records[0].seq == intent.seq and records[0].data["attempt"] == 1
    await pool.aclose()
    store.close()


async def test_a_blind_read_account_fails_permanently_on_the_first_attempt(
        tmp_path: Path, ldap_url: str, admin: ldap3.Connection) -> None:
    settings = _settings(tmp_path, ldap_url, (f"cn=blind-reader,{BASE}", "blind-reader-pw"))
    store = SqliteAuditStore(tmp_path / "audit.db")
    acts = ContainmentActivities(settings, store)
    ref = make_user(admin).model_copy(update={"provider": "corp"})
    req = ActionRequest(action_id="act-blind", workflow_id="wf-2", identity=ref,
                        action=Action.rotate, params={})
    with pytest.raises(ApplicationError) as caught:
        await _env(1).run(acts.apply_action, req)
    assert caught.value.non_retryable and caught.value.type == "PermanentProviderError"
    assert "read account cannot see userPassword" in str(caught.value)
    [failed] = store.query(types=[AuditType.action_failed])
    assert failed.action_id == "act-blind" and failed.data["code"] == "VerifyImpossible"
    assert can_bind(ldap_url, ref.id, USER_PW)
    await acts.providers.aclose()
    store.close()
