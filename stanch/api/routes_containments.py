"""Containments: status, manual containment, decisions, rollback, resolve, confirm, reviews."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api._common import (
    check_workflow_id,
    failure_response,
    read_status,
    run_update,
    temporal_client,
)
from stanch.api.auth import require
from stanch.api.decisions import Decider
from stanch.api.inputs import Reason, Text
from stanch.api.problems import problem_response, problem_responses
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
    ContainmentState,
    ContainmentStatus,
    DecisionResult,
    ResolveInput,
    ResolveVerdict,
    Review,
    RollbackInput,
    RollbackResult,
    StepView,
)

router = APIRouter(prefix="/v1/containments", tags=["containments"])
_WID = re.compile(r"^containment-[0-9a-f]{24}$")


def _check_wid(workflow_id: str) -> str:
    return check_workflow_id(workflow_id, _WID, "containment", "containment")


_client = temporal_client
_fail = failure_response
_UNAVAILABLE = "Temporal is unavailable (the reason says why); retry."
_NO_SUCH = "No such containment (ids look like `containment-<24 hex>`)."


class ContainmentItem(BaseModel):
    workflow_id: str
    run_status: str | None
    started_at: str | None
    status: str | None
    rung: int | None
    identity_kind: str | None


class ContainmentList(BaseModel):
    containments: list[ContainmentItem]


@router.get("", response_model=ContainmentList,
            responses=problem_responses(503, s503=_UNAVAILABLE))
async def list_containments(
        request: Request,
        status: Annotated[ContainmentState | None, Query(
            description="Only containments in this state.")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="At most this many.")] = 50,
        _: Principal = Depends(require(Role.viewer))) -> dict[str, Any]:
    client = await _client(request)
    query = 'WorkflowType = "ContainmentWorkflow"'
    if status:
        query += f' AND StanchStatus = "{status.value}"'
    items = []
    try:
        async for wf in client.list_workflows(query, limit=limit):
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


@router.get("/{workflow_id}", responses={
    200: {"model": ContainmentStatus}, **problem_responses(404, 503, s404=_NO_SUCH,
                                                          s503=_UNAVAILABLE)})
async def get_containment(workflow_id: str, request: Request,
                          _: Principal = Depends(require(Role.viewer))) -> Any:
    workflow_id = _check_wid(workflow_id)  # before Temporal: a bad id is a 404, not a 503
    client = await _client(request)
    try:
        status: ContainmentStatus = await read_status(
            client, workflow_id, ContainmentWorkflow.status, ContainmentStatus)
    except RPCError as err:
        return _fail(err)
    return status.model_dump(mode="json")


Rung = Literal[Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke]


class ManualRequest(BaseModel):
    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [
        {"identity": "mock:u-alice", "level": "reduce_scope",
         "reason": "suspicious sign-in from a new country"}]}}
    identity: Text = Field(description="`provider:id` or any inventory alias (UPN, key id …).")
    level: Rung = Field(description="Highest rung to apply: reduce_scope … revoke.")
    reason: Reason
    ticket: Text | None = None
    break_glass: StrictBool = False


class ManualAccepted(BaseModel):
    workflow_id: str
    alert_id: str
    identity: str
    playbook: str | None
    queued: list[str] = Field(description="Steps this request queued.")
    deduplicated: bool


def _resolve_identity(inventory: Inventory, text: str) -> IdentityContext | None:
    return lookup(inventory, text)


@router.post("", status_code=202, response_model=ManualAccepted, responses={
    202: {"links": {
        "GetContainment": {"operationId": "get_containment_v1_containments__workflow_id__get",
                           "parameters": {"workflow_id": "$response.body#/workflow_id"}},
        "Rollback": {"operationId": "rollback_v1_containments__workflow_id__rollback_post",
                     "parameters": {"workflow_id": "$response.body#/workflow_id"}},
        "Resolve": {"operationId": "resolve_v1_containments__workflow_id__resolve_post",
                    "parameters": {"workflow_id": "$response.body#/workflow_id"}},
        "Decide": {"operationId": "decide_v1_containments__workflow_id__decisions_post",
                   "parameters": {"workflow_id": "$response.body#/workflow_id"}},
        "Confirm": {"operationId": "confirm_v1_containments__workflow_id__confirm_post",
                    "parameters": {"workflow_id": "$response.body#/workflow_id"}}}},
    **problem_responses(404, 409, 503, s404="The identity is not in the inventory.",
                        s409="The containment refused the request (closed, or a "
                             "validator's reason).", s503=_UNAVAILABLE)})
async def manual_containment(body: ManualRequest, request: Request,
                             principal: Principal = Depends(require(Role.responder))) -> Any:
    inventory: Inventory = request.app.state.inventory
    audit = request.app.state.audit
    now = datetime.now(UTC)
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
    step: Text
    verdict: Literal["approve", "deny"]
    comment: Text = ""


_REFUSED = problem_responses(
    403, 404, 409, 503, s403="Refused by the containment's rules (the reason says which).",
    s404=_NO_SUCH, s409="No such step or review in this containment, not pending any "
    "more, or the containment is closed.", s503=_UNAVAILABLE)


@router.post("/{workflow_id}/decisions", responses={200: {"model": DecisionResult},
                                                   **_REFUSED})
async def decide(workflow_id: str, body: DecisionBody, request: Request,
                 principal: Principal = Depends(require(Role.approver))) -> JSONResponse:
    decider: Decider = request.app.state.decider
    outcome = await decider.decide(workflow_id=_check_wid(workflow_id), step_id=body.step,
                                   verdict=body.verdict, principal=principal,
                                   comment=body.comment, channel="api")
    if not outcome.ok:
        return problem_response(outcome.status, outcome.reason, code=outcome.code)
    return JSONResponse(outcome.result)


class ReasonBody(BaseModel):
    model_config = {"extra": "forbid"}
    reason: Reason


@router.post("/{workflow_id}/rollback", responses={200: {"model": RollbackResult},
                                                  **_REFUSED})
async def rollback(workflow_id: str, body: ReasonBody, request: Request,
                   principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.rollback,
                            RollbackInput(principal=principal.id, reason=body.reason,
                                          caller=principal), principal=principal)


class ResolveBody(BaseModel):
    model_config = {"extra": "forbid"}
    verdict: ResolveVerdict
    reason: Text = ""


@router.post("/{workflow_id}/resolve", responses={200: {"model": ContainmentStatus},
                                                 **_REFUSED})
async def resolve(workflow_id: str, body: ResolveBody, request: Request,
                  principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.resolve,
                            ResolveInput(verdict=body.verdict, principal=principal.id,
                                         reason=body.reason, caller=principal),
                            principal=principal)


class ConfirmBody(BaseModel):
    model_config = {"extra": "forbid"}
    step: Text
    reason: Text = ""


@router.post("/{workflow_id}/confirm", responses={200: {"model": StepView}, **_REFUSED})
async def confirm(workflow_id: str, body: ConfirmBody, request: Request,
                  principal: Principal = Depends(require(Role.responder))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ContainmentWorkflow.confirm,
                            ConfirmInput(step_id=body.step, principal=principal.id,
                                         reason=body.reason, caller=principal),
                            principal=principal)


class AckBody(BaseModel):
    model_config = {"extra": "forbid"}
    comment: Text = ""


@router.post("/{workflow_id}/reviews/{review_id}/ack",
             responses={200: {"model": Review}, **_REFUSED})
async def acknowledge(workflow_id: str, review_id: Annotated[Text, Path()], body: AckBody,
                      request: Request,
                      principal: Principal = Depends(require(Role.approver))) -> Any:
    return await run_update(request, _check_wid(workflow_id),
                            ContainmentWorkflow.acknowledge_review,
                            AckInput(review_id=review_id, principal=principal.id,
                                     comment=body.comment, caller=principal),
                            principal=principal)
