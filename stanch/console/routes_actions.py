"""Forms: every POST checks the CSRF token, then calls the API's own function for it.

Decisions go through the API's :class:`~stanch.api.decisions.Decider` (which audits
refusals); rollback, resolve, confirm, acknowledge, manual containment and elevations call
the API's route handlers themselves. The role each needs is the one the API requires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from temporalio.service import RPCError

from stanch.api import routes_containments as rc
from stanch.api import routes_elevations as re_
from stanch.api._common import temporal_client
from stanch.api.decisions import Decider
from stanch.console import views
from stanch.console.render import page
from stanch.console.security import PREFIX, can, checked_form
from stanch.console.sessions import Session
from stanch.models import Action, PlanState, Role
from stanch.playbook.planner import explain
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import ContainmentStatus

router = APIRouter(prefix=PREFIX, include_in_schema=False)
_WID = re.compile(r"^(containment|elevation)-[0-9a-f]{24}$")
_NEXT = re.compile(r"^/ui/[A-Za-z0-9/_\-]*$")


def _back(form: dict[str, str], default: str = f"{PREFIX}/") -> RedirectResponse:
    target = form.get("next", "")
    return RedirectResponse(target if _NEXT.match(target) else default, status_code=303)


def _say(session: Session, kind: str, text: str) -> None:
    session.say(kind, text)


def _refused(session: Session, role: Role, what: str) -> bool:
    if can(session, role):
        return False
    _say(session, "error", f"{session.principal.id} lacks the {role.value!r} role needed "
                           f"to {what}")
    return True


def _error_of(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}"


async def _call(coro: Awaitable[Any]) -> tuple[bool, Any]:
    """Run an API handler: (True, its result) or (False, the reason it gave)."""
    try:
        result = await coro
    except HTTPException as err:
        return False, str(err.detail)
    if isinstance(result, JSONResponse):
        body = json.loads(bytes(result.body))
        # An API error is a problem (RFC 9457): ``detail`` says what happened.
        return False, body.get("detail") or body.get("code") or f"HTTP {result.status_code}"
    return True, result


def _check(wid: str) -> str:
    if not _WID.match(wid):
        raise HTTPException(404, "no such workflow: ids look like containment-<24 hex>")
    return wid


# --------------------------------------------------------------------------- decisions


@router.post("/c/{wid}/decide")
async def decide(wid: str, request: Request) -> Response:
    session, form = await checked_form(request)
    wid = _check(wid)
    back = _back(form)
    step, verdict = form.get("step", ""), form.get("verdict", "")
    comment = form.get("comment", "").strip()
    if _refused(session, Role.approver, "decide"):
        return back
    if len(comment) < 3:
        _say(session, "error", f"{verdict or 'a decision'} on {step}: a comment of at least "
                               "3 characters is required (say why)")
        return back
    decider: Decider = request.app.state.decider
    outcome = await decider.decide(workflow_id=wid, step_id=step, verdict=verdict,
                                   principal=session.principal, comment=comment,
                                   channel="console")
    if outcome.ok:
        r = outcome.result
        _say(session, "ok", f"{verdict} recorded on {step}: {r['approvals']} of "
                            f"{r['quorum']} approvals, step is {r['status']}")
    elif outcome.status == 409:
        _say(session, "info", await _race_message(request, wid, step) or outcome.reason)
    else:
        _say(session, "error", f"{verdict} on {step} refused: {outcome.reason}")
    return back


async def _race_message(request: Request, wid: str, step_id: str) -> str | None:
    try:
        client = await temporal_client(request)
        status: ContainmentStatus = await client.get_workflow_handle(wid).query(
            ContainmentWorkflow.status)
    except (HTTPException, RPCError):
        return None
    step = next((s for s in reversed(status.steps) if s.step_id == step_id), None)
    return views.lost_race(step)


# --------------------------------------------------------------------------- containment


@router.post("/c/{wid}/rollback")
async def rollback(wid: str, request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/c/{wid}")
    if _refused(session, Role.responder, "roll back"):
        return back
    try:
        body = rc.ReasonBody(reason=form.get("reason", ""))
    except ValidationError as err:
        _say(session, "error", f"rollback: {_error_of(err)}")
        return back
    ok, result = await _call(rc.rollback(_check(wid), body, request, session.principal))
    if ok:
        done = ", ".join(f"{s['action']} {s['outcome']}" for s in result["steps"]) or "nothing"
        _say(session, "ok", f"rolled back: {done}")
    else:
        _say(session, "error", f"rollback refused: {result}")
    return back


@router.post("/c/{wid}/resolve")
async def resolve(wid: str, request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/c/{wid}")
    if _refused(session, Role.responder, "resolve"):
        return back
    try:
        body = rc.ResolveBody(verdict=form.get("verdict", ""), reason=form.get("reason", ""))
    except ValidationError as err:
        _say(session, "error", f"resolve: {_error_of(err)}")
        return back
    ok, result = await _call(rc.resolve(_check(wid), body, request, session.principal))
    _say(session, "ok" if ok else "error",
         f"resolved as {body.verdict.value}" if ok else f"resolve refused: {result}")
    return back


@router.post("/c/{wid}/confirm")
async def confirm(wid: str, request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/c/{wid}")
    if _refused(session, Role.responder, "confirm a time-bound step"):
        return back
    body = rc.ConfirmBody(step=form.get("step", ""), reason=form.get("reason", ""))
    ok, result = await _call(rc.confirm(_check(wid), body, request, session.principal))
    _say(session, "ok" if ok else "error",
         f"confirmed {body.step}: it stays until resolved" if ok
         else f"confirm refused: {result}")
    return back


@router.post("/c/{wid}/ack")
async def acknowledge(wid: str, request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/c/{wid}")
    if _refused(session, Role.approver, "acknowledge a break-glass review"):
        return back
    review = form.get("review", "")
    ok, result = await _call(rc.acknowledge(_check(wid), review,
                                            rc.AckBody(comment=form.get("comment", "")),
                                            request, session.principal))
    _say(session, "ok" if ok else "error",
         f"review {review} acknowledged" if ok else f"acknowledge refused: {result}")
    return back


# --------------------------------------------------------------------------- by hand


def _manual(form: dict[str, str]) -> rc.ManualRequest:
    return rc.ManualRequest(identity=form.get("identity", "").strip(),
                            level=form.get("level", ""),  # type: ignore[arg-type]
                            reason=form.get("reason", ""),
                            ticket=form.get("ticket", "").strip() or None,
                            break_glass=form.get("break_glass") == "on")


@router.post("/contain/preview")
async def contain_preview(request: Request) -> Response:
    """What ``simulate`` would plan for this request, before anything is submitted."""
    session, form = await checked_form(request)
    if _refused(session, Role.responder, "contain by hand"):
        return _back(form, f"{PREFIX}/contain")
    error, plan, ctx = None, None, None
    try:
        body = _manual(form)
    except ValidationError as err:
        error = _error_of(err)
    else:
        ctx = rc._resolve_identity(request.app.state.inventory, body.identity)
        if ctx is None:
            error = f"unknown identity {body.identity!r}: not in the inventory (search above)"
        else:
            alert = rc.manual_alert(body, ctx, session.principal, "preview",
                                    datetime.now(UTC))
            state = await _plan_state(request, ctx.ref.workflow_id())
            plan = explain(alert, ctx, request.app.state.playbooks, state)
    return page(request, "contain.html", session, form=form, plan=plan, identity=ctx,
                error=error, status=422 if error else 200)


async def _plan_state(request: Request, wid: str) -> PlanState:
    """What a running containment of this identity already did, as the planner needs it."""
    try:
        client = await temporal_client(request)
        status: ContainmentStatus = await client.get_workflow_handle(wid).query(
            ContainmentWorkflow.status)
    except (HTTPException, RPCError):
        return PlanState()
    done = [a for a in status.applied if a["status"] in ("applied", "already")]
    return PlanState(applied_step_ids=[a["step_id"] for a in done],
                     applied_actions=[Action(a["action"]) for a in done],
                     rung=status.rung, alerts_seen=status.alerts_seen)


@router.post("/contain")
async def contain(request: Request) -> Response:
    session, form = await checked_form(request)
    if _refused(session, Role.responder, "contain by hand"):
        return _back(form, f"{PREFIX}/contain")
    try:
        body = _manual(form)
    except ValidationError as err:
        return page(request, "contain.html", session, form=form, plan=None,
                    error=_error_of(err), status=422)
    ok, result = await _call(rc.manual_containment(body, request, session.principal))
    if not ok:
        return page(request, "contain.html", session, form=form, plan=None,
                    error=f"not started: {result}", status=422)
    _say(session, "ok", f"containment of {result['identity']} started "
                        f"({result['playbook']}): {', '.join(result['queued']) or 'queued'}")
    return RedirectResponse(f"{PREFIX}/c/{result['workflow_id']}", status_code=303)


# --------------------------------------------------------------------------- elevations


@router.post("/elevations")
async def request_elevation(request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/elevations")
    try:
        body = re_.ElevationBody(
            principal=form.get("principal", "").strip(),
            scopes=[s for s in re.split(r"[\s,]+", form.get("scopes", "")) if s],
            duration=form.get("duration", "").strip(), reason=form.get("reason", ""),
            ticket=form.get("ticket", "").strip() or None,
            break_glass=form.get("break_glass") == "on")
    except ValidationError as err:
        _say(session, "error", f"elevation: {_error_of(err)}")
        return back
    ok, result = await _call(re_.request_elevation(body, request, session.principal))
    _say(session, "ok" if ok else "error",
         f"elevation {result['workflow_id']} requested for {result['principal']}" if ok
         else f"elevation refused: {result}")
    return back


@router.post("/e/{wid}/{verb}")
async def elevation_action(wid: str, verb: str, request: Request) -> Response:
    session, form = await checked_form(request)
    back = _back(form, f"{PREFIX}/elevations")
    wid = _check(wid)
    try:
        if verb in ("approve", "deny"):
            if _refused(session, Role.approver, "decide"):
                return back
            if len(form.get("comment", "").strip()) < 3:
                _say(session, "error", "a comment of at least 3 characters is required")
                return back
            call = re_.decide(wid, re_.DecisionBody(verdict=verb,  # type: ignore[arg-type]
                                                    comment=form["comment"].strip()),
                              request, session.principal)
        elif verb == "extend":
            call = re_.extend(wid, re_.ExtendBody(duration=form.get("duration", ""),
                                                  reason=form.get("reason", "")),
                              request, session.principal)
        elif verb == "revoke":
            call = re_.revoke(wid, re_.RevokeBody(reason=form.get("reason", "")),
                              request, session.principal)
        else:
            raise HTTPException(404, f"unknown elevation action {verb[:40]!r}")
    except ValidationError as err:
        _say(session, "error", f"{verb}: {_error_of(err)}")
        return back
    ok, result = await _call(call)
    _say(session, "ok" if ok else "error",
         f"{verb}: done" if ok else f"{verb} refused: {result}")
    return back



