"""A leaked-credential containment of an LDAP person, end to end on a real Temporal server
and a real slapd: force_reauth does not exist there, so it is skipped with the reason and
the containment ends `contained` (issue 21), never `failed`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ldap3
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.providers.ldap import LdapProvider
from stanch.config import Settings
from stanch.inventory import with_provider_type
from stanch.models import Category, IdentityContext, Level
from stanch.playbook import load_playbooks
from tests.workflows.helpers import alert, handle, principal, running_worker, send_alert
from workflows.approvals import Verdict
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import (
    ContainmentState,
    ContainmentStatus,
    DecisionInput,
    StepStatus,
)

from .conftest import LDAP_ROOT_DN, LDAP_ROOT_PW
from .test_ldap import _conf, make_user

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def admin(ldap_url: str) -> Any:
    conn = ldap3.Connection(ldap_url, LDAP_ROOT_DN, LDAP_ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


async def _until(h: Any, done: Callable[[ContainmentStatus], bool]) -> ContainmentStatus:
    for _ in range(200):
        st: ContainmentStatus = await h.query(ContainmentWorkflow.status)
        if done(st):
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"not reached: {st.model_dump_json(indent=1)}")


async def test_leaked_credential_on_ldap_ends_contained_with_force_reauth_skipped(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, ldap_url: str,
        admin: ldap3.Connection, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"providers": {
        **settings.providers, "corp": _conf(ldap_url, tmp_path / "drop")}})
    ref = make_user(admin).model_copy(update={"provider": "corp"})
    person = with_provider_type(IdentityContext(ref=ref, owner="carol"), settings)
    assert person.provider_type == "ldap"
    playbooks = [pb for pb in load_playbooks([REPO / "playbooks"])
                 if pb.name == "leaked-user-credential"]
    a = alert(category=Category.leaked_secret, severity=Level.high, name=ref.id)
    async with running_worker(ts_env.client, settings, task_queue):
        result = await send_alert(ts_env.client, task_queue, a, playbooks, person)
        assert "leaked-user-credential:1:force_reauth" in result.skipped
        h = handle(ts_env.client, task_queue, person)
        # the new password loses the old one and the failed-login record (declared): the
        # rotate waits for a SOC approver even though waive_when holds
        rotate = "leaked-user-credential:2:rotate"
        gated = await _until(h, lambda s: any(
            x.step_id == rotate and x.status is StepStatus.awaiting_approval for x in s.steps))
        assert next(x for x in gated.steps if x.step_id == rotate).loss_gate
        await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=rotate, verdict=Verdict.approve, principal=principal("dave",
                                                                         "soc-approvers")))
        st = await _until(h, lambda s: s.state is not ContainmentState.active)
        await h.terminate("test finished")
    assert st.state is ContainmentState.contained, st.model_dump_json(indent=1)
    steps = {s.action: s for s in st.steps}
    skipped = steps["force_reauth"]
    assert skipped.status is StepStatus.skipped
    assert skipped.note is not None
    assert skipped.note.startswith("force_reauth: not supported by ldap, skipped (LDAP has "
                                   "no sessions")
    assert steps["rotate"].status is StepStatus.applied
    assert steps["rotate"].result is not None and steps["rotate"].result["changed"]


async def test_a_refused_step_is_held_and_the_containment_needs_a_human(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, ldap_url: str,
        admin: ldap3.Connection, tmp_path: Path) -> None:
    """A parameter LDAP cannot honour (reset_factors) without a fallback: the step is
    refused at plan time, never run or reported done, and the state says `failed`."""
    from stanch.playbook import Playbook

    settings = settings.model_copy(update={"providers": {
        **settings.providers, "corp": _conf(ldap_url, tmp_path / "drop")}})
    ref = make_user(admin).model_copy(update={"provider": "corp"})
    person = with_provider_type(IdentityContext(ref=ref, owner="carol"), settings)
    pb = Playbook.model_validate({
        "name": "strict", "match": {"categories": ["leaked_secret"]},
        "rules": [{"when": {}, "up_to": "rotate"}],
        "ladder": [{"action": "rotate", "params": {"reset_factors": True}}]})
    before = await LdapProvider.from_settings("corp", settings.providers["corp"],
                                              settings).snapshot(ref)
    a = alert(category=Category.leaked_secret, severity=Level.high, name=ref.id)
    async with running_worker(ts_env.client, settings, task_queue):
        result = await send_alert(ts_env.client, task_queue, a, [pb], person)
        assert result.queued == [] and "strict:0:rotate" in result.skipped
        h = handle(ts_env.client, task_queue, person)
        st = await _until(h, lambda s: s.state is not ContainmentState.active)
        await h.terminate("test finished")
    assert st.state is ContainmentState.failed
    [step] = st.steps
    assert step.status is StepStatus.refused and step.result is None
    assert step.note is not None and "ldap cannot honour reset_factors: true" in step.note
    after = await LdapProvider.from_settings("corp", settings.providers["corp"],
                                             settings).snapshot(ref)
    assert after == before, "nothing was written"
