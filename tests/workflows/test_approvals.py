"""Approvals that hold: every refusal (and that the API audits it), quorum 2-of-3 with a
denial threshold on all three paths, staged escalation and the timeout policy."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import TemporalHandle
from stanch.api.decisions import Decider
from stanch.config import Settings
from stanch.models import AuditType, Principal
from tests.workflows.helpers import (
    ALICE,
    alert,
    handle,
    playbook,
    principal,
    running_worker,
    send_alert,
)
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import StepStatus

STEP = "test-ladder:1:revoke"


def _gated(quorum: int = 2, deny_quorum: int = 1, deadline: str = "1h",
           escalation: list[dict[str, Any]] | None = None,
           on_timeout: str = "deny"):  # type: ignore[no-untyped-def]
    return playbook([
        {"action": "reduce_scope"},
        {"action": "revoke", "approval": {
            "groups": ["soc-approvers"], "quorum": quorum, "deny_quorum": deny_quorum,
            "deadline": deadline, "escalation": escalation or [], "on_timeout": on_timeout}},
    ])


async def _until(h, pred, tries: int = 200):  # type: ignore[no-untyped-def]
    st = None
    for _ in range(tries):
        st = await h.query(ContainmentWorkflow.status)
        if pred(st):
            return st
        await asyncio.sleep(0.03)
    raise AssertionError(f"not reached: {st.model_dump_json(indent=1) if st else None}")


def _step(st, step_id: str = STEP):  # type: ignore[no-untyped-def]
    return next(s for s in st.steps if s.step_id == step_id)


CAROL = principal("carol", "soc-approvers")
DAVE = principal("dave", "soc-approvers")
ERIN = principal("erin", "soc-approvers")

# (case, who decides, setup votes before it, expected HTTP status, words in the reason)
REFUSALS: list[tuple[str, Principal, list[Principal], int, str]] = [
    ("outsider", principal("mallory", "finance"), [], 403, "not an approver"),
    ("claims the group but the directory says otherwise",
     principal("oscar", "soc-approvers"), [], 403, "not an approver"),
    ("requester approves own request", principal("rita", "soc-approvers"), [], 403,
     "self-approval"),
    ("the identity under containment", principal("alice", "soc-approvers"), [], 403,
     "identity under containment"),
    ("subject by identity key", principal("a.ng", "soc-approvers",
                                          identity_keys=("mock:u-alice",)), [], 403,
     "identity under containment"),
    ("second vote by the same person", CAROL, [CAROL], 403, "duplicate vote"),
]


@pytest.mark.parametrize(("case", "who", "before", "status", "words"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
async def test_refusals_are_refused_with_a_reason_and_audited(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str,
        case: str, who: Principal, before: list[Principal], status: int, words: str) -> None:
    # The directory snapshot: carol, dave, erin, rita and alice are soc-approvers; oscar
    # is not, whatever his token claims.
    from stanch.config import PrincipalSettings

    settings.principals = {p: PrincipalSettings(groups=["soc-approvers"])
                           for p in ("carol", "dave", "erin", "rita", "alice", "a.ng")}
    async with running_worker(ts_env.client, settings, task_queue) as (_, store):
        await send_alert(ts_env.client, task_queue, alert(), [_gated()], requested_by="rita")
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        decider = Decider(TemporalHandle(settings, ts_env.client), store)
        for p in before:
            ok = await decider.decide(workflow_id=h.id, step_id=STEP, verdict="approve",
                                      principal=p)
            assert ok.ok, ok.reason
        out = await decider.decide(workflow_id=h.id, step_id=STEP, verdict="approve",
                                   principal=who, comment=case)
        assert not out.ok and out.status == status, (out.status, out.reason)
        assert words in out.reason
        refused = store.query(types=[AuditType.decision_refused])
        assert len(refused) == 1
        rec = refused[0]
        assert rec.actor == who.id and rec.workflow_id == h.id and words in (rec.reason or "")
        assert rec.data["step_id"] == STEP
        st = await h.query(ContainmentWorkflow.status)
        assert _step(st).status is StepStatus.awaiting_approval  # nothing moved


async def test_decision_on_a_step_no_longer_pending_is_409_and_audited(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue) as (_, store):
        await send_alert(ts_env.client, task_queue, alert(), [_gated(quorum=1)])
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        decider = Decider(TemporalHandle(settings, ts_env.client), store)
        assert (await decider.decide(workflow_id=h.id, step_id=STEP, verdict="approve",
                                     principal=CAROL)).ok
        late = await decider.decide(workflow_id=h.id, step_id=STEP, verdict="deny",
                                    principal=DAVE)
        assert late.status == 409 and "not pending" in late.reason
        unknown = await decider.decide(workflow_id=h.id, step_id="nope:9:revoke",
                                       verdict="approve", principal=DAVE)
        assert unknown.status == 409 and unknown.code == "UnknownStep"
        assert len(store.query(types=[AuditType.decision_refused])) == 2
        recorded = store.query(types=[AuditType.decision_recorded])
        assert [r.actor for r in recorded] == ["carol"]


async def test_quorum_two_of_three_proceeds(ts_env: WorkflowEnvironment, settings: Settings,
                                           task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(), [_gated(quorum=2, deny_quorum=2)])
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        from workflows.approvals import Verdict
        from workflows.containment_types import DecisionInput

        r = await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=STEP, verdict=Verdict.approve, principal=CAROL))
        assert r.status is StepStatus.awaiting_approval
        r = await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=STEP, verdict=Verdict.deny, principal=DAVE))
        assert r.status is StepStatus.awaiting_approval and r.denials == 1
        r = await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=STEP, verdict=Verdict.approve, principal=ERIN))
        assert r.status is StepStatus.approved and r.approvals == 2
        await _until(h, lambda s: _step(s).status is StepStatus.applied)


async def test_quorum_denial_threshold_stops(ts_env: WorkflowEnvironment, settings: Settings,
                                            task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(), [_gated(quorum=2, deny_quorum=1)])
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        from workflows.approvals import Verdict
        from workflows.containment_types import DecisionInput

        await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=STEP, verdict=Verdict.approve, principal=CAROL))
        r = await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id=STEP, verdict=Verdict.deny, principal=DAVE, comment="false alarm"))
        assert r.status is StepStatus.denied
        st = await _until(h, lambda s: not s.pending_approvals)
        assert _step(st).result is None  # never applied


async def test_escalation_then_timeout_denies(ts_env: WorkflowEnvironment, settings: Settings,
                                             task_queue: str, mock_idp: str) -> None:
    pb = _gated(quorum=2, deadline="1h",
                escalation=[{"after": "20m", "groups": ["soc-leads"]}])
    async with running_worker(ts_env.client, settings, task_queue) as (_, store):
        await send_alert(ts_env.client, task_queue, alert(), [pb])
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        await ts_env.sleep(timedelta(minutes=21))
        st = await _until(h, lambda s: "soc-leads" in _step(s).approval["groups"])
        assert _step(st).status is StepStatus.awaiting_approval
        await ts_env.sleep(timedelta(minutes=40))
        st = await _until(h, lambda s: _step(s).status is StepStatus.timed_out)
        assert _step(st).result is None
        await asyncio.sleep(0.3)
        types = {r.type for r in store.query(workflow_id=h.id)}
        assert AuditType.approval_escalated in types and AuditType.approval_timeout in types


async def test_timeout_policy_approve_applies(ts_env: WorkflowEnvironment, settings: Settings,
                                             task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(),
                         [_gated(quorum=2, deadline="30m", on_timeout="approve")])
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.pending_approvals)
        await ts_env.sleep(timedelta(minutes=31))
        await _until(h, lambda s: _step(s).status is StepStatus.applied)


def test_alice_is_the_identity_under_test() -> None:
    assert ALICE.ref.key == "mock:u-alice" and ALICE.owner == "alice"
