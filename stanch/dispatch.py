"""From a normalized alert and a resolved identity to the identity's containment workflow.

Update-with-start: the first alert for an identity starts its ContainmentWorkflow, later
ones join the running one. A SIEM retry of the same alert is recognised by the workflow
(its alert id is in the seen set) and answered ``deduplicated: true``; nothing runs twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from stanch.audit import AuditStore
from stanch.config import Settings
from stanch.inventory import with_provider_type
from stanch.models import Alert, AuditEvent, AuditType, IdentityContext
from stanch.playbook import Playbook, match
from stanch.temporal import answered
from workflows.containment import ContainmentWorkflow, initial_search_attributes
from workflows.containment_types import ContainmentInput, NewAlertInput, NewAlertResult

ClientFactory = Callable[[], Awaitable[Client]]


class Dispatcher:
    def __init__(self, settings: Settings, client: ClientFactory,
                 playbooks: Callable[[], Sequence[Playbook]], *,
                 search_attributes: bool = True, audit: AuditStore | None = None) -> None:
        self.settings = settings
        self._client = client
        self._playbooks = playbooks
        self.search_attributes = search_attributes
        self._audit = audit
        n = settings.notify
        self.notifications = bool(n.webhook_url or n.slack_webhook_url)

    def candidate_playbooks(self, alert: Alert, identity: IdentityContext) -> list[Playbook]:
        """Only the playbook that matches travels into history, not the whole library."""
        pbs = list(self._playbooks())
        chosen = match(alert, identity, pbs)
        return [chosen] if chosen is not None else []

    async def dispatch(self, alert: Alert, identity: IdentityContext, *,
                       requested_by: str | None = None, reason: str = "",
                       ticket: str | None = None, break_glass: bool = False) -> NewAlertResult:
        client = await self._client()
        identity = with_provider_type(identity, self.settings)
        wid = identity.ref.workflow_id()
        # The raw payload stays in the audit trail; history gets the normalized alert only
        # (manual requests keep theirs: it carries the requested level).
        slim = alert if alert.source == "manual" else alert.model_copy(update={"raw": {}})
        op = WithStartWorkflowOperation(
            ContainmentWorkflow.run,
            ContainmentInput(identity=identity, search_attributes=self.search_attributes,
                             notifications=self.notifications),
            id=wid,
            task_queue=self.settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=initial_search_attributes(identity)
            if self.search_attributes else None,
        )
        result: NewAlertResult = await answered(client.execute_update_with_start_workflow(
            ContainmentWorkflow.add_alert,
            NewAlertInput(alert=slim, identity=identity,
                          playbooks=self.candidate_playbooks(alert, identity),
                          requested_by=requested_by, reason=reason, ticket=ticket,
                          break_glass=break_glass),
            start_workflow_operation=op,
        ), self.settings.temporal.update_timeout_seconds, "alert")
        if not result.deduplicated and self._audit is not None:
            # Recorded here rather than by an activity in the workflow: the update's answer
            # is the plan, and it saves a round trip through Temporal for every alert.
            await asyncio.to_thread(self._audit.append, AuditEvent(
                type=AuditType.plan_chosen, at=datetime.now(UTC), actor="stanch",
                subject=identity.ref.key, workflow_id=wid, alert_ids=[alert.id],
                reason=result.plan_reason, ticket=ticket,
                data={"playbook": result.playbook, "queued": result.queued,
                      "planned": result.planned, "loses": result.loses,
                      "skipped": result.skipped,
                      "category": alert.category.value,
                      "severity": alert.severity.value, "requested_by": requested_by},
                dedup_key=f"plan:{wid}:{alert.id}"))
        return result
