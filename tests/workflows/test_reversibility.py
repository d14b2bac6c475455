"""Declared losses and per-target steps in a running containment (time-skipping Temporal,
the mock IdP): a loss gates approval even when `waive_when` holds, the declaration is in
the status, and a later alert naming a different grant removes that grant too."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings
from stanch.models import Level
from stanch.playbook import load_playbooks
from tests.workflows.helpers import alert, handle, playbook, running_worker, send_alert
from tests.workflows.test_replay import HISTORIES, _replayer
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import StepStatus

RECORDED = HISTORIES / "containment-per-target-grants.json"
REPO = Path(__file__).resolve().parents[2]


async def _until(h, pred, tries: int = 300):  # type: ignore[no-untyped-def]
    for _ in range(tries):
        st = await h.query(ContainmentWorkflow.status)
        if pred(st):
            return st
        await asyncio.sleep(0.03)
    raise AssertionError("condition not reached")


def _groups(mock_idp: str) -> set[str]:
    return {g["name"] for g in httpx.get(f"{mock_idp}/identities/u-alice").json()["groups"]}


def _grant_alert(grant: str, key: str) -> Any:
    return alert(severity=Level.high, key=key).model_copy(update={"grants": [grant]})


async def test_a_loss_needs_approval_even_when_waived(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    waived = {"groups": ["soc-approvers"], "waive_when": {"severity": "high"}}
    pb = playbook([{"action": "force_reauth", "approval": waived}], up_to="force_reauth")
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(severity=Level.high), [pb])
        st = await _until(handle(ts_env.client, task_queue), lambda s: s.pending_approvals)
        [step] = st.steps
        assert step.status is StepStatus.awaiting_approval
        assert step.loses == ["sessions"]
        assert "loses sessions" in step.loss_gate and step.changes
        sessions = httpx.get(f"{mock_idp}/identities/u-alice").json()["sessions"]
        assert len(sessions) == 2  # nothing revoked while it waits


async def test_an_accepted_loss_runs_automatically(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    waived = {"groups": ["soc-approvers"], "waive_when": {"severity": "high"}}
    pb = playbook([{"action": "force_reauth", "approval": waived,
                    "accept_loss": ["sessions"]}], up_to="force_reauth")
    async with running_worker(ts_env.client, settings, task_queue):
        planned = await send_alert(ts_env.client, task_queue, alert(severity=Level.high), [pb])
        assert planned.loses == {"test-ladder:0:force_reauth": ["sessions"]}
        st = await _until(handle(ts_env.client, task_queue),
                          lambda s: s.steps and s.steps[0].status is StepStatus.applied)
        assert st.steps[0].loses == ["sessions"] and not st.steps[0].loss_gate
        assert st.applied[0]["loses"] == ["sessions"]


async def _per_target_scenario(env: WorkflowEnvironment, task_queue: str,
                               mock_idp: str) -> str:
    pb = playbook([{"action": "reduce_scope", "params": {"only_new_grants": True}}],
                  up_to="reduce_scope")
    h = handle(env.client, task_queue)
    first = await send_alert(env.client, task_queue, _grant_alert("prod-admins", "pe-1"), [pb])
    assert first.queued == ["test-ladder:0:reduce_scope[prod-admins]"]
    await _until(h, lambda s: s.steps[-1].status is StepStatus.applied)
    assert "prod-admins" not in _groups(mock_idp)
    second = await send_alert(env.client, task_queue,
                              _grant_alert("break-glass-admins", "pe-2"), [pb])
    assert second.queued == ["test-ladder:0:reduce_scope[break-glass-admins]"]
    await _until(h, lambda s: len(s.steps) == 2 and s.steps[-1].status is StepStatus.applied)
    assert _groups(mock_idp) == {"employees", "engineering"}
    changes = httpx.get(f"{mock_idp}/changes", params={"identity": "u-alice"}).json()
    # the same grant reported again (a new delivery of the same finding): nothing changes
    again = await send_alert(env.client, task_queue,
                             _grant_alert("break-glass-admins", "pe-3"), [pb])
    assert again.queued == [] and again.planned == []
    st = await h.query(ContainmentWorkflow.status)
    assert len(st.steps) == 2
    assert httpx.get(f"{mock_idp}/changes", params={"identity": "u-alice"}).json() == changes
    return h.id


async def test_a_second_grant_is_removed_and_the_same_grant_changes_nothing(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue):
        wid = await _per_target_scenario(ts_env, task_queue, mock_idp)
        history = await ts_env.client.get_workflow_handle(wid).fetch_history()
    result = await _replayer().replay_workflow(history)
    assert result.replay_failure is None
    if os.environ.get("STANCH_RECORD_HISTORIES") == "1":
        RECORDED.write_text(history.to_json())


async def test_recorded_per_target_history_replays() -> None:
    history = WorkflowHistory.from_json(RECORDED.stem, json.loads(RECORDED.read_text()))
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    assert Path(RECORDED).stat().st_size > 0


async def test_default_privilege_escalation_playbook_per_grant(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    """The shipped playbook: the second alert's new grant is removed (and, as a repeat,
    revoke waits for approval); the same alert delivered again changes nothing."""
    pbs = load_playbooks([REPO / "playbooks"])

    def pe(grant: str, key: str) -> Any:
        return _grant_alert(grant, key).model_copy(update={"confidence": Level.medium})

    h = handle(ts_env.client, task_queue)
    async with running_worker(ts_env.client, settings, task_queue):
        first = await send_alert(ts_env.client, task_queue, pe("prod-admins", "d-1"), pbs)
        assert "privilege-escalation:1:reduce_scope[prod-admins]" in first.queued
        await _until(h, lambda s: any(x.step_id.endswith("[prod-admins]")
                                      and x.status is StepStatus.applied for x in s.steps))
        second = await send_alert(ts_env.client, task_queue,
                                  pe("break-glass-admins", "d-2"), pbs)
        assert second.queued == ["privilege-escalation:1:reduce_scope[break-glass-admins]",
                                 "privilege-escalation:2:revoke"]
        st = await _until(h, lambda s: s.pending_approvals and any(
            x.step_id.endswith("[break-glass-admins]") and x.status is StepStatus.applied
            for x in s.steps))
        assert _groups(mock_idp) == {"employees", "engineering"}
        changes = httpx.get(f"{mock_idp}/changes", params={"identity": "u-alice"}).json()
        repeat = await send_alert(ts_env.client, task_queue, pe("break-glass-admins", "d-2"),
                                  pbs)
        assert repeat.deduplicated
        again = await send_alert(ts_env.client, task_queue, pe("break-glass-admins", "d-3"),
                                 pbs)
        assert again.queued == []
        after = await h.query(ContainmentWorkflow.status)
        assert [x.step_id for x in after.steps] == [x.step_id for x in st.steps]
        assert httpx.get(f"{mock_idp}/changes",
                         params={"identity": "u-alice"}).json() == changes
