"""Containments: status, manual containment, decisions, rollback, resolve, confirm, reviews."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api._common import (
    check_workflow_id,
    failure_response,
    run_update,
    temporal_client,
)
from stanch.api.auth import require
from stanch.api.decisions import Decider
from stanch.dispatch import Dispatcher
from stanch.inventory import Inventory, lookup
from stanch.models import (
    Action,
    Alert,
    AuditEvent,
    AuditType,
    Category,
    IdentityContext,
    IdentityMention,
    Level,
    NameType,
    Principal,
    Role,
)
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import (
    AckInput,
    ConfirmInput,
    ContainmentStatus,
    ResolveInput,
    ResolveVerdict,
    RollbackInput,
)

router = APIRouter(prefix="/v1/containments", tags=["containments"])
_WID = re.compile(r"^containment-[0-9a-f]{24}$")


def _check_wid(workflow_id: str) -> str:
    return check_workflow_id(workflow_id, _WID, "containment", "containment")


_client = temporal_client
_fail = failure_response


@router.get("")
async def list_containments(request: Request, status: str | None = None, limit: int = 50,
                            _: Principal = Depends(require(Role.viewer))) -> dict[str, Any]:
    client = await _client(request)
    query = 'WorkflowType = "ContainmentWorkflow"'
    if status:
        if not re.fullmatch(r"[a-z_]+", status):
            raise HTTPException(422, "status must be a containment state name")
        query += f' AND StanchStatus = "{status}"'
    items = []
    try:
        async for wf in client.list_workflows(query, limit=max(1, min(limit, 500))):
            sa = wf.typed_search_attributes
            items.append({
                "workflow_id": wf.id, "run_status": wf.status.name if wf.status else None,
                "started_at": wf.start_time.isoformat() if wf.start_time else None,
                "status": sa.get(_sa("StanchStatus")), "rung": sa.get(_sa_int("StanchRung")),
                "identity_kind": sa.get(_sa("StanchIdentityKind")),
            })
    except RPCError as err:
        return _fail(err)  # type: ignore[return-value]
    return {"containments": items}


def _sa(name: str) -> Any:
    from temporalio.common import SearchAttributeKey

    return SearchAttributeKey.for_keyword(name)


def _sa_int(name: str) -> Any:
    from temporalio.common import SearchAttributeKey

    return SearchAttributeKey.for_int(name)


@router.get("/{workflow_id}")
async def get_containment(workflow_id: str, request: Request,
                          _: Principal = Depends(require(Role.viewer))) -> Any:
    workflow_id = _check_wid(workflow_id)  # before Temporal: a bad id is a 404, not a 503
    client = await _client(request)
    handle = client.get_workflow_handle(workflow_id)
    try:
        status: ContainmentStatus = await handle.query(ContainmentWorkflow.status)
    except RPCError as err:
        return _fail(err)
    return status.model_dump(mode="json")


class ManualRequest(BaseModel):
    model_config = {"extra": "forbid"}
    identity: str = Field(description="`provider:id` or any inventory alias (UPN, key id …).")
    level: Action = Field(description="Highest rung to apply: reduce_scope … revoke.")
    reason: Annotated[str, AfterValidator(_meaningful)] = Field(
        description="Why: required, audited.")
    ticket: str | None = None
    break_glass: bool = False


def _resolve_identity(inventory: Inventory, text: str) -> IdentityContext | None:
    return lookup(inventory, text)


@router.post("", status_code=202)
async def manual_containment(body: ManualRequest, request: Request,
                             principal: Principal = Depends(require(Role.responder))) -> Any:
    inventory: Inventory = request.app.state.inventory
    audit = request.app.state.audit
    now = datetime.now(UTC)
    if body.level is Action.notify:
        raise HTTPException(422, "level must be a containment rung: reduce_scope, "
                                 "force_reauth, rotate or revoke")
    ctx = _resolve_identity(inventory, body.identity)
    if ctx is None:
        await asyncio.to_thread(audit.append, AuditEvent(
            type=AuditType.identity_unresolved, at=now, actor=principal.id,
            reason="manual containment: identity not in the inventory",
            data={"name": body.identity, "level": body.level.value}))
        raise HTTPException(404, f"unknown identity {body.identity!r}: not in the inventory")
    request_id = uuid.uuid4().hex
    alert = manual_alert(body, ctx, principal, request_id, now)
    await asyncio.to_thread(audit.append, AuditEvent(
        type=AuditType.manual_containment, at=now, actor=principal.id, subject=ctx.ref.key,
        workflow_id=ctx.ref.workflow_id(), alert_ids=[alert.id], reason=body.reason,
        ticket=body.ticket, data={"level": body.level.value, "break_glass": body.break_glass},
        dedup_key=f"manual:{request_id}"))
    dispatcher: Dispatcher = request.app.state.dispatcher
    try:
        result = await dispatcher.dispatch(alert, ctx, requested_by=principal.id,
                                           reason=body.reason, ticket=body.ticket,
                                           break_glass=body.break_glass)
    except (RPCError, WorkflowUpdateFailedError) as err:
        return _fail(err)
    return {"workflow_id": result.workflow_id, "alert_id": alert.id,
            "identity": ctx.ref.key, "playbook": result.playbook, "queued": result.queued,
            "deduplicated": result.deduplicated}


def manual_alert(body: ManualRequest, ctx: IdentityContext, principal: Principal,
                 request_id: str, now: datetime) -> Alert:
    """The alert a manual containment feeds the planner (the console's preview uses it)."""
    return Alert(
        id=Alert.make_id("manual", request_id), source="manual", source_alert_id=request_id,
        dedup_key=request_id, title=f"manual containment by {principal.id}: {body.reason}",
        description=body.reason, category=Category.manual, severity=Level.high,
        confidence=Level.high,
        mentions=[IdentityMention(name=ctx.ref.key, name_type=NameType.provider_id)],
        received_at=now,
        raw={"level": body.level.value, "reason": body.reason, "ticket": body.ticket,
             "requested_by": principal.id, "break_glass": body.break_glass},
    )


class DecisionBody(BaseModel):
    model_config = {"extra": "forbid"}
    step: str
    verdict: Literal["approve", "deny"]
    comment: str = ""


@router.post("/{workflow_id}/decisions")
async def decide(workflow_id: str, body: DecisionBody, request: Request,
                 principal: Principal = Depends(require(Role.approver))) -> JSONResponse:
    decider: Decider = request.app.state.decider
    outcome = await decider.decide(workflow_id=_check_wid(workflow_id), step_id=body.step,
                                   verdict=body.verdict, principal=principal,
                                   comment=body.comment, channel="api")
    if not outcome.ok:
        return JSONResponse({"error": "refused", "reason": outcome.reason},
                            status_code=outcome.status)
    return JSONResponse(outcome.result)


def _meaningful(text: str) -> str:
    if len(text.strip()) < 3:
        raise ValueError("a reason of at least 3 characters is required")
    return text.strip()


class ReasonBody(BaseModel):
    model_config = {"extra": "forbid"}
    reason: Annotated[str, AfterValidator(_meaningful)]


@router.post("/{workflow_id}/rollback")
async def rollback(workflow_id: str, body: ReasonBody, request: Request,
                   principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.rollback,
                            RollbackInput(principal=principal.id, reason=body.reason,
                                          caller=principal), principal=principal)


class ResolveBody(BaseModel):
    model_config = {"extra": "forbid"}
    verdict: ResolveVerdict
    reason: str = ""


@router.post("/{workflow_id}/resolve")
async def resolve(workflow_id: str, body: ResolveBody, request: Request,
                  principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.resolve,
                            ResolveInput(verdict=body.verdict, principal=principal.id,
                                         reason=body.reason, caller=principal),
                            principal=principal)


class ConfirmBody(BaseModel):
    model_config = {"extra": "forbid"}
    step: str
    reason: str = ""


@router.post("/{workflow_id}/confirm")
async def confirm(workflow_id: str, body: ConfirmBody, request: Request,
                  principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.confirm,
                            ConfirmInput(step_id=body.step, principal=principal.id,
                                         reason=body.reason, caller=principal),
                            principal=principal)


class AckBody(BaseModel):
    model_config = {"extra": "forbid"}
    comment: str = ""


@router.post("/{workflow_id}/reviews/{review_id}/ack")
async def acknowledge(workflow_id: str, review_id: str, body: AckBody, request: Request,
                      principal: Principal = Depends(require(Role.approver))) -> Any:
    return await run_update(request, _check_wid(workflow_id),
                            ContainmentWorkflow.acknowledge_review,
                            AckInput(review_id=review_id, principal=principal.id,
                                     comment=body.comment, caller=principal),
                            principal=principal)
