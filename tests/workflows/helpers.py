"""Helpers for containment workflow tests: playbooks, identities, alerts, a worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.worker import Worker

from stanch.audit import AuditStore, SqliteAuditStore
from stanch.config import Settings
from stanch.models import (
    Alert,
    Category,
    IdentityContext,
    IdentityKind,
    IdentityMention,
    IdentityRef,
    Level,
    NameType,
    Principal,
    Role,
)
from stanch.playbook import Playbook
from stanch.worker import build_worker
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import ContainmentInput, NewAlertInput, NewAlertResult

ALICE = IdentityContext(
    ref=IdentityRef(provider="mock", id="u-alice", kind=IdentityKind.user),
    display_name="Alice Ng", owner="alice", environment="prod", criticality=Level.high,
    aliases=["alice@example.com"],
)
DEPLOY = IdentityContext(
    ref=IdentityRef(provider="mock", id="sa-deploy", kind=IdentityKind.service_account),
    display_name="deploy bot", owner="alice", custodian="platform-team", environment="prod",
    criticality=Level.critical, aliases=["AKIAMOCKDEPLOY0001"],
)


def playbook(ladder: list[dict[str, Any]], *, name: str = "test-ladder",
             up_to: str = "revoke", categories: list[str] | None = None) -> Playbook:
    return Playbook.model_validate({
        "name": name,
        "match": {"categories": categories or ["privilege_escalation"]},
        "rules": [{"when": {}, "up_to": up_to}],
        "ladder": ladder,
    })


def alert(*, severity: Level = Level.high, category: Category = Category.privilege_escalation,
          key: str | None = None, name: str = "alice@example.com") -> Alert:
    key = key or uuid.uuid4().hex
    return Alert(
        id=Alert.make_id("generic", key), source="generic", source_alert_id=key, dedup_key=key,
        title="test alert", category=category, severity=severity, confidence=Level.high,
        mentions=[IdentityMention(name=name, name_type=NameType.upn)],
        received_at=datetime.now(UTC),
    )


def principal(pid: str, *groups: str, roles: tuple[Role, ...] = (Role.approver,),
              identity_keys: tuple[str, ...] = ()) -> Principal:
    return Principal(id=pid, groups=list(groups), roles=list(roles),
                     identity_keys=list(identity_keys))


async def send_alert(client: Client, task_queue: str, a: Alert, pbs: list[Playbook],
                     identity: IdentityContext = ALICE, *, requested_by: str | None = None,
                     break_glass: bool = False, search_attributes: bool = False,
                     ) -> NewAlertResult:
    op = WithStartWorkflowOperation(
        ContainmentWorkflow.run,
        ContainmentInput(identity=identity, search_attributes=search_attributes),
        id=identity.ref.workflow_id() + task_queue[-6:],
        task_queue=task_queue, id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    result: NewAlertResult = await client.execute_update_with_start_workflow(
        ContainmentWorkflow.add_alert,
        NewAlertInput(alert=a, identity=identity, playbooks=pbs, requested_by=requested_by,
                      reason="test", break_glass=break_glass),
        start_workflow_operation=op,
    )
    return result


def handle(client: Client, task_queue: str, identity: IdentityContext = ALICE
           ) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(identity.ref.workflow_id() + task_queue[-6:])


@asynccontextmanager
async def running_worker(client: Client, settings: Settings, task_queue: str
                         ) -> AsyncIterator[tuple[Worker, AuditStore]]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    worker = build_worker(client, settings, store, task_queue=task_queue)
    try:
        async with worker:
            yield worker, store
            await terminate_all(client, task_queue)
    finally:
        store.close()


async def terminate_all(client: Client, task_queue: str) -> None:
    """End this test's workflows so none keeps the shared time-skipping clock from moving."""
    for ident in (ALICE, DEPLOY):
        h = handle(client, task_queue, ident)
        try:
            desc = await h.describe()
        except RPCError:
            continue
        if desc.status == WorkflowExecutionStatus.RUNNING:
            await h.terminate("test finished")
