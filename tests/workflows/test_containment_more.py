"""Rollback restores every captured field; the workflow runs exactly what simulate plans;
a worse alert escalates; break-glass opens a review; search attributes on the dev server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings
from stanch.models import Action, Category, Level, PlanState
from stanch.playbook import load_playbooks, plan
from tests.workflows.helpers import (
    ALICE,
    DEPLOY,
    alert,
    handle,
    playbook,
    running_worker,
    send_alert,
)
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import (
    AckInput,
    ContainmentState,
    RollbackInput,
    StepStatus,
)

REPO = Path(__file__).resolve().parents[2]


async def _until(h, pred, tries: int = 300):  # type: ignore[no-untyped-def]
    st = None
    for _ in range(tries):
        st = await h.query(ContainmentWorkflow.status)
        if pred(st):
            return st
        await asyncio.sleep(0.03)
    raise AssertionError(f"not reached: {st.model_dump_json(indent=1) if st else None}")


def _restorable(ident: dict[str, Any]) -> dict[str, Any]:
    """Every field containment may change and rollback must restore (sessions excepted:
    force_reauth has no undo — a revoked session is gone by design)."""
    return {
        "status": ident["status"],
        "groups": sorted((g["name"], g["privileged"]) for g in ident["groups"]),
        "credentials": sorted((c["id"], c["type"], c["status"]) for c in ident["credentials"]
                              if c["status"] == "active"),
    }


async def test_rollback_restores_every_captured_field(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    pb = playbook([
        {"action": "reduce_scope"},
        {"action": "force_reauth", "accept_loss": ["sessions"]},
        {"action": "rotate"},
        {"action": "revoke"},
    ])
    before = httpx.get(f"{mock_idp}/identities/u-alice").json()
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(severity=Level.critical), [pb])
        h = handle(ts_env.client, task_queue)
        st = await _until(h, lambda s: len(s.steps) == 4 and all(
            x.status in (StepStatus.applied, StepStatus.already) for x in s.steps))
        contained = httpx.get(f"{mock_idp}/identities/u-alice").json()
        assert contained["status"] == "disabled" and not contained["sessions"]
        assert _restorable(contained) != _restorable(before)
        result = await h.execute_update(ContainmentWorkflow.rollback, RollbackInput(
            principal="carol", reason="false positive in test"))
        outcomes = {u.action: u.outcome for u in result.steps}
        assert outcomes == {"revoke": "reverted", "rotate": "reverted",
                            "force_reauth": "irreversible", "reduce_scope": "reverted"}
        after = httpx.get(f"{mock_idp}/identities/u-alice").json()
        assert _restorable(after) == _restorable(before)
        st = await h.query(ContainmentWorkflow.status)
        assert st.state is ContainmentState.rolled_back
        # Reverse order: revoke undone first, reduce_scope last.
        assert [u.action for u in result.steps] == ["revoke", "rotate", "force_reauth",
                                                    "reduce_scope"]


async def test_workflow_runs_exactly_what_simulate_plans(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    playbooks = load_playbooks([REPO / "playbooks"])
    a = alert(severity=Level.high, category=Category.privilege_escalation)
    simulated = plan(a, ALICE, playbooks, PlanState())
    assert simulated.playbook is not None and simulated.steps
    async with running_worker(ts_env.client, settings, task_queue):
        result = await send_alert(ts_env.client, task_queue, a, playbooks)
        assert result.playbook == simulated.playbook
        assert result.queued == [s.step_id for s in simulated.steps]
        h = handle(ts_env.client, task_queue)
        st = await h.query(ContainmentWorkflow.status)
        ran = [(s.step_id, s.action) for s in st.steps]
        assert ran == [(s.step_id, s.action.value) for s in simulated.steps]
        for view, planned in zip(st.steps, simulated.steps, strict=True):
            wanted = planned.approval.groups if planned.approval else None
            got = view.approval["policy"]["groups"] if view.approval else None
            if view.status is StepStatus.awaiting_approval:
                assert got == wanted


async def test_worse_alert_escalates_same_identity(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    pb = playbook([{"action": "reduce_scope"}, {"action": "revoke"}], up_to="reduce_scope")
    pb = pb.model_copy(update={"rules": [
        *pb.rules[:0],
        type(pb.rules[0]).model_validate({"when": {"severity": "medium"},
                                          "up_to": "reduce_scope"}),
        type(pb.rules[0]).model_validate({"when": {"severity": "critical"}, "up_to": "revoke"}),
    ]})
    async with running_worker(ts_env.client, settings, task_queue):
        first = await send_alert(ts_env.client, task_queue, alert(severity=Level.medium), [pb])
        assert first.queued == ["test-ladder:0:reduce_scope"]
        h = handle(ts_env.client, task_queue)
        await _until(h, lambda s: s.steps[0].status is StepStatus.applied)
        worse = await send_alert(ts_env.client, task_queue, alert(severity=Level.critical), [pb])
        assert worse.queued == ["test-ladder:1:revoke"]  # reduce_scope is not applied twice
        st = await _until(h, lambda s: len(s.steps) == 2
                          and s.steps[1].status is StepStatus.applied)
        assert st.rung == Action.revoke.rung and st.alerts_seen == 2
    changes = httpx.get(f"{mock_idp}/changes", params={"identity": "u-alice"}).json()
    removals = [c for c in changes if "remove" in c["op"]]
    # one change per group removed, all by the single reduce_scope action
    assert len({c["idempotency_key"] for c in removals}) == 1
    assert len(removals) == len({c["detail"]["name"] for c in removals})


async def test_break_glass_skips_approval_and_opens_a_review(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    pb = playbook([{"action": "revoke", "break_glass": True,
                    "break_glass_reason": "on-call may disable a compromised account",
                    "approval": {"groups": ["soc-approvers"], "deadline": "1h"}}])
    async with running_worker(ts_env.client, settings, task_queue):
        await send_alert(ts_env.client, task_queue, alert(), [pb], requested_by="oncall",
                         break_glass=True)
        h = handle(ts_env.client, task_queue)
        st = await _until(h, lambda s: s.steps[0].status is StepStatus.applied)
        assert st.reviews and st.reviews[0].acknowledged_by is None
        review_id = st.reviews[0].review_id
        from temporalio.client import WorkflowUpdateFailedError

        try:
            await h.execute_update(ContainmentWorkflow.acknowledge_review,
                                   AckInput(review_id=review_id, principal="oncall"))
            raise AssertionError("self-acknowledgement must be refused")
        except WorkflowUpdateFailedError:
            pass
        # The contained identity itself (a token naming its key) cannot settle the review.
        from stanch.models import Principal

        try:
            await h.execute_update(ContainmentWorkflow.acknowledge_review, AckInput(
                review_id=review_id, principal="a-l-i-c-e",
                caller=Principal(id="a-l-i-c-e", identity_keys=[ALICE.ref.key])))
            raise AssertionError("the subject acknowledging must be refused")
        except WorkflowUpdateFailedError as err:
            assert getattr(err.cause, "type", None) == "SubjectRefused", err.cause
        rev = await h.execute_update(ContainmentWorkflow.acknowledge_review,
                                     AckInput(review_id=review_id, principal="carol"))
        assert rev.acknowledged_by == "carol"


async def test_search_attributes_find_containments_on_the_dev_server(
        dev_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    client: Client = dev_env.client
    pb = playbook([{"action": "reduce_scope"}])
    async with running_worker(client, settings, task_queue):
        await send_alert(client, task_queue, alert(), [pb], identity=DEPLOY,
                         search_attributes=True)
        h = handle(client, task_queue, DEPLOY)
        await _until(h, lambda s: s.steps[0].status is StepStatus.applied)
        found: list[str] = []
        for _ in range(100):  # visibility is eventually consistent
            found = [wf.id async for wf in client.list_workflows(
                'StanchStatus = "contained" AND StanchIdentityKind = "service_account" '
                "AND StanchRung >= 1")]
            if h.id in found:
                break
            await asyncio.sleep(0.1)
        assert h.id in found


async def test_long_containment_continues_as_new_and_keeps_its_state(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str, mock_idp: str) -> None:
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    from workflows.containment_types import ContainmentInput, NewAlertInput

    pb = playbook([{"action": "reduce_scope"},
                   {"action": "revoke", "approval": {"groups": ["soc-approvers"],
                                                     "deadline": "2h"}}])
    wid = ALICE.ref.workflow_id() + task_queue[-6:]
    alerts = [alert() for _ in range(12)]
    async with running_worker(ts_env.client, settings, task_queue):
        for a in [*alerts, alerts[0]]:  # the last one is a redelivery of the first
            op = WithStartWorkflowOperation(
                ContainmentWorkflow.run,
                ContainmentInput(identity=ALICE, search_attributes=False,
                                 max_updates_per_run=5),
                id=wid, task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
            last = await ts_env.client.execute_update_with_start_workflow(
                ContainmentWorkflow.add_alert,
                NewAlertInput(alert=a, identity=ALICE, playbooks=[pb]),
                start_workflow_operation=op)
        assert last.deduplicated  # the seen set crossed the continue-as-new boundary
        h = ts_env.client.get_workflow_handle(wid)
        st = await _until(h, lambda s: s.pending_approvals)
        assert st.alerts_seen == 12
        assert [s.step_id for s in st.steps] == ["test-ladder:0:reduce_scope",
                                                  "test-ladder:1:revoke"]
        history = await h.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.continued_execution_run_id, "expected a continued-as-new run"
    changes = httpx.get(f"{mock_idp}/changes", params={"identity": "u-alice"}).json()
    assert len({c["idempotency_key"] for c in changes if "remove" in c["op"]}) == 1
