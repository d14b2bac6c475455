"""ContainmentWorkflow on the time-skipping server against the real mock IdP."""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings
from stanch.models import AuditType, Level
from tests.workflows.helpers import (
    alert,
    handle,
    playbook,
    principal,
    running_worker,
    send_alert,
)
from workflows.approvals import Verdict
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import (
    ContainmentState,
    DecisionInput,
    ResolveInput,
    ResolveVerdict,
    StepStatus,
)


def _groups(url: str, ident: str = "u-alice") -> set[str]:
    data = httpx.get(f"{url}/identities/{ident}").json()
    return {g["name"] for g in data["groups"]}


async def _wait_status(h, pred, env: WorkflowEnvironment, tries: int = 100):  # type: ignore[no-untyped-def]
    import asyncio

    for _ in range(tries):
        st = await h.query(ContainmentWorkflow.status)
        if pred(st):
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not reached; last status: {st.model_dump_json(indent=1)}")


async def test_alert_reduces_scope_once_and_dedups(ts_env: WorkflowEnvironment,
                                                    settings: Settings, task_queue: str,
                                                    mock_idp: str) -> None:
    pb = playbook([{"action": "reduce_scope", "description": "drop privileged groups"}])
    a = alert()
    async with running_worker(ts_env.client, settings, task_queue) as (_, store):
        first = await send_alert(ts_env.client, task_queue, a, [pb])
        assert not first.deduplicated and first.queued == ["test-ladder:0:reduce_scope"]
        again = await send_alert(ts_env.client, task_queue, a, [pb])
        assert again.deduplicated
        h = handle(ts_env.client, task_queue)
        st = await _wait_status(h, lambda s: s.steps and s.steps[0].status is StepStatus.applied,
                                ts_env)
        assert st.state is ContainmentState.contained
        assert "prod-admins" not in _groups(mock_idp)
        assert "employees" in _groups(mock_idp)
        changes = httpx.get(f"{mock_idp}/changes").json()
        removals = [c for c in changes if "remove" in c["op"]]
        assert len(removals) >= 1
        # Exactly one intent and one result for the action.
        action_id = st.audit["test-ladder:0:reduce_scope"]
        recs = store.query(types=[AuditType.action_intent, AuditType.action_result])
        mine = [r for r in recs if r.action_id == action_id]
        assert sorted(r.phase or "" for r in mine) == ["intent", "result"]


async def test_approval_quorum_then_rollback_restores(ts_env: WorkflowEnvironment,
                                                      settings: Settings, task_queue: str,
                                                      mock_idp: str) -> None:
    pb = playbook([
        {"action": "reduce_scope"},
        {"action": "revoke", "approval": {"groups": ["soc-approvers"], "quorum": 2,
                                          "deny_quorum": 1, "deadline": "1h"}},
    ])
    before = httpx.get(f"{mock_idp}/identities/u-alice").json()
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(), [pb])
        h = handle(ts_env.client, task_queue)
        await _wait_status(h, lambda s: s.pending_approvals, ts_env)
        r1 = await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id="test-ladder:1:revoke", verdict=Verdict.approve,
            principal=principal("carol", "soc-approvers")))
        assert r1.status is StepStatus.awaiting_approval and r1.approvals == 1
        await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id="test-ladder:1:revoke", verdict=Verdict.approve,
            principal=principal("dave", "soc-approvers")))
        await _wait_status(h, lambda s: s.steps[1].status is StepStatus.applied, ts_env)
        assert httpx.get(f"{mock_idp}/identities/u-alice").json()["status"] == "disabled"
        st = await h.execute_update(ContainmentWorkflow.resolve, ResolveInput(
            verdict=ResolveVerdict.false_positive, principal="carol", reason="test"))
        assert st.state is ContainmentState.resolved
        after = httpx.get(f"{mock_idp}/identities/u-alice").json()
        assert after["status"] == before["status"]
        assert sorted(g["name"] for g in after["groups"]) == sorted(
            g["name"] for g in before["groups"])


async def test_revert_after_expires_by_itself(ts_env: WorkflowEnvironment, settings: Settings,
                                              task_queue: str, mock_idp: str) -> None:
    pb = playbook([{"action": "reduce_scope", "revert_after": "4h"}])
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(severity=Level.critical), [pb])
        h = handle(ts_env.client, task_queue)
        await _wait_status(h, lambda s: s.steps and s.steps[0].status is StepStatus.applied,
                           ts_env)
        assert "prod-admins" not in _groups(mock_idp)
        await ts_env.sleep(timedelta(hours=4, minutes=1))
        await _wait_status(h, lambda s: s.steps[0].status is StepStatus.reverted, ts_env)
        assert "prod-admins" in _groups(mock_idp)
