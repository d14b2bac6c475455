"""ElevationWorkflow on the time-skipping server against the real mock IdP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings
from stanch.models import AuditEvent, AuditType, Role
from tests.elevation.helpers import (
    APPROVERS,
    CAROL,
    DAVE,
    groups_of,
    person,
    request,
    running_worker,
    sessions_of,
    start,
    wait_pending,
    wait_state,
)
from workflows.approvals import Verdict
from workflows.elevation import ElevationWorkflow, ScopeLeaseWorkflow
from workflows.elevation_types import (
    DecisionInput,
    ElevationState,
    ExtendInput,
    RevokeInput,
    lease_workflow_id,
)

pytestmark = pytest.mark.timeout(60)


def approve(who=CAROL) -> DecisionInput:  # type: ignore[no-untyped-def]
    return DecisionInput(verdict=Verdict.approve, principal=who, comment="ok")


def refusal(err: WorkflowUpdateFailedError) -> tuple[str | None, str]:
    cause = err.cause
    assert isinstance(cause, ApplicationError)
    return cause.type, cause.message


async def test_expiry_revokes_on_time_with_sessions_and_audit(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    async with running_worker(client, esettings, task_queue) as store:
        h = await start(client, task_queue, request(esettings, ["prod-db"], timedelta(minutes=30)))
        await wait_pending(h)
        assert "prod-db" not in groups_of(mock_idp)
        await h.execute_update(ElevationWorkflow.decide, approve())
        granted = await wait_state(h, ElevationState.active)
        assert "prod-db" in groups_of(mock_idp)
        assert granted.expires_at == granted.granted_at + timedelta(minutes=30)  # type: ignore[operator]

        # What happens under the elevation: Bob acts (as his Stanch principal and as the
        # identity itself); someone else acts; Bob acted before the grant too.
        at = granted.granted_at
        assert at is not None
        for actor, when in (("bob", at + timedelta(minutes=5)),
                            ("mock:u-bob", at + timedelta(minutes=6)),
                            ("carol", at + timedelta(minutes=7)),
                            ("bob", at - timedelta(hours=1))):
            store.append(AuditEvent(type=AuditType.manual_containment, at=when, actor=actor,
                                    subject="mock:u-alice", reason="under elevation"))

        await ts_env.sleep(timedelta(minutes=29))
        assert "prod-db" in groups_of(mock_idp)

        final = await h.result()
        assert final.state is ElevationState.expired
        assert final.ended_at is not None and final.expires_at is not None
        late = final.ended_at - final.expires_at
        assert timedelta(0) <= late < timedelta(seconds=5), late
        assert "prod-db" not in groups_of(mock_idp)
        assert "payments-approvers" in groups_of(mock_idp)  # untouched
        assert sessions_of(mock_idp) == []  # sessions opened under the elevation are gone
        assert final.review is not None and final.review.count == 2
        assert {r["actor"] for r in final.review.records} == {"bob", "mock:u-bob"}
        review = store.query(workflow_id=h.id, types=[AuditType.elevation_review])
        assert review[0].data["count"] == 2

        types = [str(r.type) for r in store.query(workflow_id=h.id, limit=100)]
        for t in (AuditType.elevation_requested, AuditType.decision_recorded,
                  AuditType.elevation_granted, AuditType.elevation_revoked,
                  AuditType.elevation_review):
            assert str(t) in types, (t, types)
        ledger = lease_workflow_id("mock:u-bob", "prod-db", esettings.elevation_ledger_namespace)
        actions = [(str(r.type), r.data.get("action")) for r in store.query(workflow_id=ledger)]
        assert (str(AuditType.action_result), "elevation.grant_scope") in actions
        assert (str(AuditType.action_result), "elevation.revoke_scope") in actions


async def test_extend_needs_approval_and_respects_the_cap(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    async with running_worker(client, esettings, task_queue) as store:
        # prod-* allows at most 1h from the first grant.
        h = await start(client, task_queue, request(esettings, ["prod-db"], timedelta(minutes=30)))
        await wait_pending(h)
        await h.execute_update(ElevationWorkflow.decide, approve())
        granted = await wait_state(h, ElevationState.active)
        assert granted.cap_at == granted.granted_at + timedelta(hours=1)  # type: ignore[operator]

        ext = await h.execute_update(ElevationWorkflow.extend, ExtendInput(
            principal=person("alice", roles=(Role.responder,)), duration=timedelta(minutes=45),
            reason="still investigating"))
        assert ext.capped and ext.requested_until == granted.cap_at
        pending = await wait_pending(h, "extend")
        assert pending.expires_at == granted.expires_at  # nothing changes before approval
        with pytest.raises(WorkflowUpdateFailedError) as refused:  # requester of the extension
            await h.execute_update(ElevationWorkflow.decide,
                                   approve(person("alice", APPROVERS)))
        assert refused.value.cause.type == "DecisionRefused"  # type: ignore[union-attr]
        await h.execute_update(ElevationWorkflow.decide, approve(DAVE))
        for _ in range(100):
            extended = await h.query(ElevationWorkflow.status)
            if extended.expires_at == granted.cap_at:
                break
            await asyncio.sleep(0.05)
        assert extended.expires_at == granted.cap_at

        with pytest.raises(WorkflowUpdateFailedError) as capped:
            await h.execute_update(ElevationWorkflow.extend, ExtendInput(
                principal=person("alice"), duration=timedelta(minutes=5), reason="more"))
        assert refusal(capped.value)[0] == "CapReached"

        await ts_env.sleep(timedelta(minutes=50))
        assert "prod-db" in groups_of(mock_idp)  # past the original 30m: the extension holds
        final = await h.result()
        assert final.state is ElevationState.expired
        assert final.ended_at - granted.granted_at < timedelta(hours=1, seconds=5)  # type: ignore[operator]
        assert "prod-db" not in groups_of(mock_idp)
        extended_records = store.query(workflow_id=h.id, types=[AuditType.elevation_extended])
        assert len(extended_records) == 1 and extended_records[0].data["capped"] is True


async def test_overlapping_grants_keep_the_scope_until_the_later_ends(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    async with running_worker(client, esettings, task_queue) as store:
        short = await start(client, task_queue,
                            request(esettings, ["prod-db"], timedelta(minutes=20)))
        long = await start(client, task_queue,
                           request(esettings, ["prod-db"], timedelta(minutes=50)))
        for h in (short, long):
            await wait_pending(h)
            await h.execute_update(ElevationWorkflow.decide, approve())
            await wait_state(h, ElevationState.active)
        ledger = client.get_workflow_handle(lease_workflow_id(
            "mock:u-bob", "prod-db", esettings.elevation_ledger_namespace))
        assert len((await ledger.query(ScopeLeaseWorkflow.status)).leases) == 2

        first = await short.result()
        assert first.state is ElevationState.expired
        assert first.leases[0].released and not first.leases[0].removed
        assert "prod-db" in groups_of(mock_idp)  # the longer grant still holds it
        assert len((await ledger.query(ScopeLeaseWorkflow.status)).leases) == 1

        second = await long.result()
        assert second.leases[0].removed
        assert "prod-db" not in groups_of(mock_idp)
        revoked = store.query(workflow_id=short.id, types=[AuditType.elevation_revoked])
        assert revoked[0].data["kept"] == {"prod-db": "another grant"}


async def test_a_membership_held_before_the_elevation_survives_it(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    assert "payments-approvers" in groups_of(mock_idp)
    async with running_worker(client, esettings, task_queue):
        h = await start(client, task_queue, request(
            esettings, ["payments-approvers", "prod-pay"], timedelta(minutes=10)))
        await wait_pending(h)
        await h.execute_update(ElevationWorkflow.decide, approve())
        active = await wait_state(h, ElevationState.active)
        assert {v.scope: v.preexisting for v in active.leases} == {
            "payments-approvers": True, "prod-pay": False}
        final = await h.result()
        assert final.state is ElevationState.expired
        groups = groups_of(mock_idp)
        assert "payments-approvers" in groups and "prod-pay" not in groups


async def test_refusals_self_subject_duplicate_outsider(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    async with running_worker(client, esettings, task_queue) as store:
        # db-admin: dba-leads, quorum 2.
        h = await start(client, task_queue, request(esettings, ["db-admin"], timedelta(minutes=30),
                                                    requested_by="carol"))
        await wait_pending(h)
        cases = {
            "self-approval": person("carol", "dba-leads"),
            "principal being elevated": person("bob", "dba-leads", identity_keys=("mock:u-bob",)),
            "not an approver": person("eve", "soc-approvers"),
        }
        for expected, who in cases.items():
            with pytest.raises(WorkflowUpdateFailedError) as err:
                await h.execute_update(ElevationWorkflow.decide, approve(who))
            kind, message = refusal(err.value)
            assert kind == "DecisionRefused" and expected in message, message
        first = await h.execute_update(ElevationWorkflow.decide, approve(DAVE))
        assert first.approvals == {"db-admin": 1}
        assert first.state is ElevationState.awaiting_approval
        with pytest.raises(WorkflowUpdateFailedError) as dup:
            await h.execute_update(ElevationWorkflow.decide, approve(DAVE))
        assert "duplicate" in refusal(dup.value)[1]
        assert "db-admin" not in groups_of(mock_idp)

        # Revoke-now: an outsider may not; any approver may, without quorum.
        with pytest.raises(WorkflowUpdateFailedError) as outsider:
            await h.execute_update(ElevationWorkflow.revoke, RevokeInput(
                principal=person("eve", "soc-approvers"), reason="nope"))
        assert refusal(outsider.value)[0] == "DecisionRefused"
        ended = await h.execute_update(ElevationWorkflow.revoke, RevokeInput(
            principal=DAVE, reason="no longer needed"))
        assert ended.state is ElevationState.revoked and ended.granted_at is None
        await h.result()
        types = {str(r.type) for r in store.query(workflow_id=h.id)}
        assert str(AuditType.elevation_revoked) in types


async def test_revoke_now_and_cancel_both_revoke(
        ts_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = ts_env.client
    async with running_worker(client, esettings, task_queue) as store:
        revoked = await start(client, task_queue,
                              request(esettings, ["prod-a"], timedelta(minutes=30)))
        cancelled = await start(client, task_queue,
                                request(esettings, ["prod-b"], timedelta(minutes=30)))
        for h in (revoked, cancelled):
            await wait_pending(h)
            await h.execute_update(ElevationWorkflow.decide, approve())
            await wait_state(h, ElevationState.active)
        assert {"prod-a", "prod-b"} <= groups_of(mock_idp)

        status = await revoked.execute_update(ElevationWorkflow.revoke, RevokeInput(
            principal=person("alice", roles=(Role.responder,)), reason="done early"))
        assert status.state is ElevationState.revoked and status.ended_by == "alice"
        assert "prod-a" not in groups_of(mock_idp)

        await cancelled.cancel()
        with pytest.raises(WorkflowFailureError) as err:
            await cancelled.result()
        assert isinstance(err.value.cause, CancelledError)
        assert "prod-b" not in groups_of(mock_idp)
        records = store.query(workflow_id=cancelled.id, types=[AuditType.elevation_revoked,
                                                               AuditType.elevation_review])
        outcomes = [r.data.get("outcome") for r in records if r.type is AuditType.elevation_revoked]
        assert outcomes == ["cancelled"]
        assert any(r.type is AuditType.elevation_review for r in records)
