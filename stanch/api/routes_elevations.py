"""Elevations: request, list, read, decide, extend, revoke.

Who may do what: a responder may request an elevation for anyone, any principal may request
one for an identity it *is* (its ``identity_keys``); break-glass is for responders only.
Approvers decide. Extending needs the same standing as requesting. Revoking is open to every
authenticated caller at the API and decided by the workflow: the requester, the principal
itself, any approver of the scopes and SOC admins may end an elevation, without quorum.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError

from stanch.api._common import (
    check_workflow_id,
    failure_response,
    read_status,
    run_update,
    temporal_client,
)
from stanch.api.auth import has_role, require
from stanch.api.decisions import Decider, update_failure
from stanch.api.inputs import DurationText, Name, Reason, Text
from stanch.api.problems import problem_responses
from stanch.api.refusals import audit_refusal
from stanch.config import Settings
from stanch.inventory import Inventory
from stanch.models import IdentityRef, Principal, Role
from stanch.playbook.schema import parse_duration
from stanch.temporal import answered
from workflows.approvals import Verdict
from workflows.elevation import ElevationWorkflow
from workflows.elevation_types import (
    DecisionInput,
    DecisionResult,
    ElevationInput,
    ElevationStatus,
    ExtendInput,
    ExtendResult,
    RevokeInput,
    elevation_workflow_id,
    policy_for,
)

router = APIRouter(prefix="/v1/elevations", tags=["elevations"])
_WID = re.compile(r"^elevation-[0-9a-f]{24}$")
_KEY = re.compile(r"^[a-z_][a-z0-9_]*:\S+$")


def _check_wid(workflow_id: str) -> str:
    return check_workflow_id(workflow_id, _WID, "elevation", "elevation")


_client = temporal_client


def _fail(err: BaseException) -> JSONResponse:
    return failure_response(err, not_found="no such elevation")


def _duration(text: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise HTTPException(422, f"duration {err}") from None


def _resolve(request: Request, text: str) -> IdentityRef:
    """``provider:id`` or an inventory alias (UPN, key id …) of an *inventory* identity: only
    identities someone owns and described can be elevated."""
    from stanch.api.routes_containments import _resolve_identity

    inventory: Inventory = request.app.state.inventory
    ctx = _resolve_identity(inventory, text)
    if ctx is not None:
        return ctx.ref
    raise HTTPException(404, f"unknown principal {text[:200]!r}: not in the identity inventory "
                             "(add it to inventory/*.yaml to make it elevatable)")


def _may_request(principal: Principal, ref: IdentityRef) -> bool:
    return has_role(principal, Role.responder) or ref.key in principal.identity_keys


class ElevationBody(BaseModel):
    model_config = {"extra": "forbid", "json_schema_extra": {"examples": [
        {"principal": "mock:u-alice", "scopes": ["prod-admins"], "duration": "30m",
         "reason": "hotfix for the billing outage"}]}}
    principal: Text = Field(description="`provider:id` or an inventory alias of who gets it.")
    scopes: list[Name] = Field(min_length=1, max_length=64,
                               description="Groups/roles/policies to grant.")
    duration: DurationText = Field(description="How long, e.g. `30m`; capped by the scopes' "
                                               "policy.")
    reason: Reason
    ticket: Text | None = None
    break_glass: StrictBool = Field(default=False, description="Grant now, review after "
                              "(only where every scope's policy allows it).")


class ElevationAccepted(BaseModel):
    workflow_id: str
    principal: str
    scopes: list[str]
    policies: dict[str, Any]
    break_glass: bool


class ElevationItem(BaseModel):
    workflow_id: str
    run_status: str | None
    started_at: str | None
    principal: str | None = None
    scopes: list[str] | None = None
    state: str | None = None
    requested_by: str | None = None
    expires_at: str | None = None


class ElevationList(BaseModel):
    elevations: list[ElevationItem]


# Listed elevations whose state is read: running ones (a query), completed ones (result).
_READABLE = (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
_UNAVAILABLE = "Temporal is unavailable (the reason says why); retry."
_NO_SUCH = "No such elevation (ids look like `elevation-<24 hex>`)."
_REFUSED = problem_responses(
    403, 404, 409, 503, s403="Refused: not the principal, a responder or an approver of the "
    "scopes, as the operation needs (the reason says which).", s404=_NO_SUCH,
    s409="Not possible in the elevation's state (the reason says why).", s503=_UNAVAILABLE)
_LINK = {"parameters": {"workflow_id": "$response.body#/workflow_id"}}


@router.post("", status_code=202, response_model=ElevationAccepted, responses={
    202: {"links": {
        "GetElevation": {"operationId": "get_elevation_v1_elevations__workflow_id__get",
                         **_LINK},
        "Decide": {"operationId": "decide_v1_elevations__workflow_id__decisions_post",
                   **_LINK},
        "Extend": {"operationId": "extend_v1_elevations__workflow_id__extend_post", **_LINK},
        "Revoke": {"operationId": "revoke_v1_elevations__workflow_id__revoke_post",
                   **_LINK}}},
    **problem_responses(403, 404, 409, 503, s403="Not a responder, and not the principal "
                        "itself; or break-glass without the responder role.",
                        s404="The principal is not in the inventory and not `provider:id` "
                             "of a configured provider.",
                        s409="Temporal refused to start it.", s503=_UNAVAILABLE)})
async def request_elevation(body: ElevationBody, request: Request,
                            principal: Principal = Depends(require(Role.viewer))) -> Any:
    settings: Settings = request.app.state.settings
    ref = _resolve(request, body.principal)
    refused = None
    if not _may_request(principal, ref):
        refused = (f"principal {principal.id!r} may request elevations only for itself "
                   "(responders: for anyone)")
    elif body.break_glass and not has_role(principal, Role.responder):
        refused = "break-glass is for responders"
    if refused is not None:
        await audit_refusal(request, principal, reason=refused, refusal="not_allowed")
        raise HTTPException(403, refused)
    scopes = list(dict.fromkeys(body.scopes))  # trimmed and non-blank (Name)
    inp = ElevationInput(
        principal=ref, scopes=scopes, duration=_duration(body.duration), reason=body.reason,
        ticket=body.ticket, requested_by=principal.id, break_glass=body.break_glass,
        policies={s: policy_for(ref.provider, s, settings.elevation_policies,
                                settings.elevation_default_policy) for s in scopes},
        ledger_namespace=settings.elevation_ledger_namespace)
    client = await _client(request)
    workflow_id = elevation_workflow_id(uuid.uuid4().hex)
    try:
        await client.start_workflow(ElevationWorkflow.run, inp, id=workflow_id,
                                    task_queue=settings.temporal.task_queue)
    except RPCError as err:
        return _fail(err)
    return {"workflow_id": workflow_id, "principal": ref.key, "scopes": scopes,
            "policies": {s: p.model_dump(mode="json") for s, p in inp.policies.items()},
            "break_glass": body.break_glass}


@router.get("", response_model=ElevationList, response_model_exclude_none=True,
            responses=problem_responses(503, s503=_UNAVAILABLE))
async def list_elevations(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=200, description="At most this many.")] = 50,
        _: Principal = Depends(require(Role.viewer))) -> Any:
    client = await _client(request)
    items: list[dict[str, Any]] = []
    try:
        async for wf in client.list_workflows('WorkflowType = "ElevationWorkflow"',
                                              limit=limit):
            item: dict[str, Any] = {
                "workflow_id": wf.id, "run_status": wf.status.name if wf.status else None,
                "started_at": wf.start_time.isoformat() if wf.start_time else None}
            if wf.status not in _READABLE:
                items.append(item)  # terminated or failed: a query would replay its history
                continue
            try:
                status: ElevationStatus = await read_status(
                    client, wf.id, ElevationWorkflow.status, ElevationStatus, wf.status)
                item.update(principal=status.principal, scopes=status.scopes,
                            state=status.state.value, requested_by=status.requested_by,
                            expires_at=status.expires_at.isoformat()
                            if status.expires_at else None)
            except RPCError:
                pass  # listed by visibility; its state is one GET away
            items.append(item)
    except RPCError as err:
        return _fail(err)
    return {"elevations": items}


@router.get("/{workflow_id}", responses={
    200: {"model": ElevationStatus}, **problem_responses(404, 503, s404=_NO_SUCH,
                                                        s503=_UNAVAILABLE)})
async def get_elevation(workflow_id: str, request: Request,
                        _: Principal = Depends(require(Role.viewer))) -> Any:
    workflow_id = _check_wid(workflow_id)
    client = await _client(request)
    try:
        status = await read_status(client, workflow_id, ElevationWorkflow.status,
                                   ElevationStatus)
    except RPCError as err:
        return _fail(err)
    return status.model_dump(mode="json")


class DecisionBody(BaseModel):
    model_config = {"extra": "forbid"}
    verdict: Literal["approve", "deny"]
    comment: Text = ""


@router.post("/{workflow_id}/decisions", responses={200: {"model": DecisionResult},
                                                   **_REFUSED})
async def decide(workflow_id: str, body: DecisionBody, request: Request,
                 principal: Principal = Depends(require(Role.approver))) -> Any:
    workflow_id = _check_wid(workflow_id)  # before Temporal: a bad id is a 404, not a 503
    client = await _client(request)
    handle = client.get_workflow_handle(workflow_id)
    try:
        result = await answered(handle.execute_update(ElevationWorkflow.decide, DecisionInput(
            verdict=Verdict(body.verdict), principal=principal, comment=body.comment)),
            request.app.state.settings.temporal.update_timeout_seconds, "decision")
    except (RPCError, WorkflowUpdateFailedError) as err:
        _, kind, reason = update_failure(err)
        decider: Decider = request.app.state.decider
        await decider.audit_refusal(workflow_id=workflow_id, step_id="elevation",
                                    verdict=body.verdict, principal=principal, channel="api",
                                    reason=reason, kind=kind)
        return _fail(err)
    return result.model_dump(mode="json")


class ExtendBody(BaseModel):
    model_config = {"extra": "forbid"}
    duration: DurationText
    reason: Reason


@router.post("/{workflow_id}/extend", responses={200: {"model": ExtendResult}, **_REFUSED})
async def extend(workflow_id: str, body: ExtendBody, request: Request,
                 principal: Principal = Depends(require(Role.viewer))) -> Any:
    workflow_id = _check_wid(workflow_id)  # before Temporal: a bad id is a 404, not a 503
    client = await _client(request)
    handle = client.get_workflow_handle(workflow_id)
    try:
        current: ElevationStatus = await handle.query(ElevationWorkflow.status)
    except RPCError as err:
        return _fail(err)
    if not (has_role(principal, Role.responder) or current.principal in principal.identity_keys):
        reason = "extending needs a responder or the principal itself"
        await audit_refusal(request, principal, reason=reason, refusal="not_allowed",
                            workflow_id=workflow_id)
        raise HTTPException(403, reason)
    return await run_update(request, workflow_id, ElevationWorkflow.extend, ExtendInput(
        principal=principal, duration=_duration(body.duration), reason=body.reason),
        not_found="no such elevation", principal=principal)


class RevokeBody(BaseModel):
    model_config = {"extra": "forbid"}
    reason: Reason


@router.post("/{workflow_id}/revoke", responses={200: {"model": ElevationStatus},
                                                **_REFUSED})
async def revoke(workflow_id: str, body: RevokeBody, request: Request,
                 principal: Principal = Depends(require(Role.viewer))) -> Any:
    return await run_update(request, _check_wid(workflow_id), ElevationWorkflow.revoke,
                            RevokeInput(principal=principal, reason=body.reason),
                            not_found="no such elevation", principal=principal)
