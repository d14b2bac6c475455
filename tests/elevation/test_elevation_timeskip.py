"""ElevationWorkflow on the time-skipping server against the real mock IdP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings
from stanch.models import AuditType, Role
from tests.elevation.helpers import (
    APPROVERS,
    CAROL,
    DAVE,
    person,
    groups_of,
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
        assert final.review is not None

        types = [str(r.type) for r in store.query(workflow_id=h.id, limit=100)]
        for t in (AuditType.elevation_requested, AuditType.decision_recorded,
                  AuditType.elevation_granted, AuditType.elevation_revoked,
                  AuditType.elevation_review):
            assert str(t) in types, (t, types)
        ledger = lease_workflow_id("mock:u-bob", "prod-db", esettings.elevation_ledger_namespace)
        actions = [(str(r.type), r.data.get("action")) for r in store.query(workflow_id=ledger)]
        assert (str(AuditType.action_result), "elevation.grant_scope") in actions
        assert (str(AuditType.action_result), "elevation.revoke_scope") in actions
