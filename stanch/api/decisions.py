"""Deciding on a pending step: the one path for the API, the CLI (through the API) and chat.

Temporal validators refuse a bad decision synchronously, but a refusal leaves nothing in
workflow history. So this module audits every refused attempt, with who tried and why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from stanch.api.app import TemporalHandle
from stanch.audit import AuditStore
from stanch.metrics import DECISIONS
from stanch.models import AuditEvent, AuditType, Principal
from stanch.temporal import answered
from workflows.approvals import Verdict
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import DecisionInput, DecisionResult

# ApplicationError type from the validator → HTTP status for the caller. A step the
# containment does not have is a conflict with its state (409), not a missing resource:
# the containment itself exists.
_STATUS = {"DecisionRefused": 403, "SubjectRefused": 403, "UnknownStep": 409,
           "NotPending": 409, "Closed": 409}


@dataclass
class DecisionOutcome:
    ok: bool
    status: int
    reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)
    code: str = "refused"


def update_failure(err: BaseException) -> tuple[int, str, str]:
    """(http status, error type, reason) for a failed workflow update or RPC."""
    if isinstance(err, WorkflowUpdateFailedError):
        cause = err.cause
        if isinstance(cause, ApplicationError):
            reason = cause.message
            kind = cause.type or "ApplicationError"
            status = _STATUS.get(kind, 409)
            if kind == "DecisionRefused" and reason.startswith("not pending"):
                status = 409
            return status, kind, reason
        return 409, "UpdateFailed", str(cause or err)
    if isinstance(err, RPCError):
        if err.status is RPCStatusCode.NOT_FOUND:
            if "completed" in (err.message or "").lower():
                return 409, "Closed", "the workflow has completed (resolved or closed)"
            return 404, "NotFound", "no such workflow"
        return 503, "TemporalUnavailable", f"Temporal: {err.message}"
    return 503, "TemporalUnavailable", str(err)[:300]


class Decider:
    def __init__(self, temporal: TemporalHandle, audit: AuditStore) -> None:
        self._temporal = temporal
        self._audit = audit

    async def decide(self, *, workflow_id: str, step_id: str, verdict: str,
                     principal: Principal, comment: str = "",
                     channel: str = "api") -> DecisionOutcome:
        try:
            v = Verdict(verdict)
        except ValueError:
            return DecisionOutcome(False, 422, f"verdict must be approve or deny (got {verdict!r})",
                                   code="invalid_request")
        try:
            client = await self._temporal()
            handle = client.get_workflow_handle(workflow_id)
            result: DecisionResult = await answered(handle.execute_update(
                ContainmentWorkflow.decide,
                DecisionInput(step_id=step_id, verdict=v, principal=principal,
                              comment=comment, channel=channel),
            ), self._temporal.settings.temporal.update_timeout_seconds, "decision")
        except (WorkflowUpdateFailedError, RPCError) as err:
            status, kind, reason = update_failure(err)
            await self.audit_refusal(workflow_id=workflow_id, step_id=step_id, verdict=verdict,
                                     principal=principal, channel=channel, reason=reason,
                                     kind=kind)
            DECISIONS.labels(verdict, "refused").inc()
            return DecisionOutcome(False, status, reason, code=kind)
        DECISIONS.labels(verdict, "recorded").inc()
        return DecisionOutcome(True, 200, "recorded", result.model_dump(mode="json"))

    async def audit_refusal(self, *, workflow_id: str, step_id: str, verdict: str,
                            principal: Principal | None, channel: str, reason: str,
                            kind: str, actor: str | None = None) -> None:
        event = AuditEvent(
            type=AuditType.decision_refused, at=datetime.now(UTC),
            actor=actor or (principal.id if principal else "unknown"),
            workflow_id=workflow_id, reason=reason,
            data={"step_id": step_id, "verdict": verdict, "channel": channel, "refusal": kind,
                  "groups": principal.groups if principal else []},
        )
        await asyncio.to_thread(self._audit.append, event)
