"""Time-bound elevation: ask, grant, wait, revoke, review. It always ends.

``ElevationWorkflow`` (one per request) asks the approvers each scope's policy names, grants
through the scope's ledger, waits on a durable timer, and at expiry (or an early revoke, or
a cancellation) releases the grant and summarizes what the principal did under it.

``ScopeLeaseWorkflow`` (one per principal and scope) is the ledger that makes overlapping
grants safe: it holds the set of live leases and whether the principal held the scope
before Stanch touched it. It adds the scope for the first lease, removes it (and revokes the
principal's sessions) only when the last lease ends, and never removes a scope the principal
already had. Elevations reach it through activities (a workflow cannot send an update), with
update-with-start, so whichever elevation comes first creates it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

# The worker passes workflows.approvals through the sandbox (stanch.worker.PASSTHROUGH); a
# bare sandbox would import its own copy, so the round types live here beside the workflow.
from workflows import approvals
from workflows.approvals import ApprovalOutcome, ApprovalState, Vote

with workflow.unsafe.imports_passed_through():
    from stanch.models import AuditEvent, AuditType, NotifyRequest, Principal, Role
    from workflows.elevation_types import (
        ENDED,
        AcquireInput,
        AcquireResult,
        DecisionInput,
        DecisionResult,
        ElevationInput,
        ElevationState,
        ElevationStatus,
        ExtendInput,
        ExtendResult,
        GrantResult,
        Lease,
        LeaseRequest,
        LedgerInput,
        LedgerStatus,
        ReleaseInput,
        ReleaseResult,
        ReviewRequest,
        ReviewSummary,
        RevokeInput,
        RevokeScopeResult,
        ScopeChangeRequest,
        ScopeLeaseView,
        lease_id,
        lease_workflow_id,
    )

QUICK = timedelta(seconds=10)
QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200),
                          maximum_interval=timedelta(seconds=10), maximum_attempts=0)
GRANT_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30), maximum_attempts=0,
    non_retryable_error_types=["PermanentProviderError", "UnknownProvider", "LeaseReleased"],
)
GRANT_BUDGET = timedelta(minutes=10)
# Revoking never gives up: every error retries (a 403 today is a credential fixed tomorrow),
# backing off to a minute between attempts, with no overall deadline.
REVOKE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                           maximum_interval=timedelta(minutes=1), maximum_attempts=0)
LEASE_CALL = timedelta(minutes=5)  # an acquire/release waits for the ledger's provider call
MAX_LEDGER_UPDATES_PER_RUN = 500
RELEASES_KEPT = 200


class PolicyApproval(BaseModel):
    """One approval request: the scopes that share one policy."""

    pattern: str
    scopes: list[str]
    state: ApprovalState


class Round(BaseModel):
    """One approval round: the initial grant, or one extension."""

    kind: str = Field(description="grant | extend")
    requested_by: str
    reason: str
    requested_at: datetime
    until: datetime | None = Field(default=None, description="extend: the expiry asked for.")
    capped: bool = False
    approvals: list[PolicyApproval] = Field(default_factory=list)
    outcome: ApprovalOutcome = ApprovalOutcome.pending

    @property
    def deadline(self) -> datetime | None:
        return min((a.state.deadline for a in self.approvals), default=None)


async def _wait(cond: Callable[[], bool], until: datetime | None) -> None:
    """Until ``cond`` holds or the clock reaches ``until`` (a durable timer)."""
    if until is None:
        await workflow.wait_condition(cond)
        return
    delay = until - workflow.now()
    if delay <= timedelta(0):
        return
    try:
        await workflow.wait_condition(cond, timeout=delay)
    except TimeoutError:
        pass


def _cause(err: BaseException) -> str:
    cur: BaseException = err
    while cur.__cause__ is not None:
        cur = cur.__cause__
    return str(cur)


# =========================================================================== elevation


@workflow.defn
class ElevationWorkflow:
    @workflow.init
    def __init__(self, inp: ElevationInput) -> None:
        self.inp = inp
        self.state = ElevationState.awaiting_approval
        self.requested_at: datetime | None = None
        self.granted_at: datetime | None = None
        self.expires_at: datetime | None = None
        self.cap_at: datetime | None = None
        self.ended_at: datetime | None = None
        self.ended_by: str | None = None
        self.end_reason: str | None = None
        self.rounds: list[Round] = []
        self.extend_queue: list[ExtendInput] = []
        self.revoke_request: RevokeInput | None = None
        self.grant_started = False
        self.leases = [ScopeLeaseView(scope=s, lease_id="", ledger_id="") for s in inp.scopes]
        self.review: ReviewSummary | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------------------ the runbook
    @workflow.run
    async def run(self, inp: ElevationInput) -> ElevationStatus:
        try:
            await self._lifecycle()
        except asyncio.CancelledError:
            # Cancelling the workflow must not leave the grant behind: revoke, shielded from
            # any further cancellation, then let the cancellation through.
            await asyncio.shield(asyncio.ensure_future(self._end(
                ElevationState.cancelled, actor="stanch:cancel",
                reason="elevation workflow cancelled")))
            await self._drain_tasks()
            raise
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._drain_tasks()
        return self.status()

    async def _lifecycle(self) -> None:
        inp = self.inp
        self.requested_at = workflow.now()
        for v in self.leases:
            v.lease_id = lease_id(self._wid, v.scope)
            v.ledger_id = lease_workflow_id(inp.principal.key, v.scope, inp.ledger_namespace)
        self._audit(AuditType.elevation_requested, actor=inp.requested_by, data={
            "scopes": inp.scopes, "duration_seconds": inp.duration.total_seconds(),
            "break_glass": inp.break_glass,
            "policies": {s: p.model_dump(mode="json") for s, p in inp.policies.items()}})

        if self._break_glass_allowed():
            self._audit(AuditType.break_glass, actor=inp.requested_by,
                        data={"scopes": inp.scopes, "review": "after the elevation ends"})
            self._notify("elevation_break_glass", self._approver_groups(),
                         f"break-glass elevation of {inp.principal.key}")
        else:
            rnd = await self._open_round("grant", inp.requested_by, inp.reason)
            await _wait(lambda: rnd.outcome is not ApprovalOutcome.pending
                        or self.revoke_request is not None, rnd.deadline)
            if self.revoke_request is not None:
                self._cancel_round(rnd)
                await self._end(ElevationState.revoked, actor=self.revoke_request.principal.id,
                                reason=f"withdrawn before approval: {self.revoke_request.reason}")
                return
            if rnd.outcome is ApprovalOutcome.pending:
                self._expire_round(rnd)
            if rnd.outcome is not ApprovalOutcome.approved:
                state = (ElevationState.denied if rnd.outcome is ApprovalOutcome.denied
                         else ElevationState.timed_out)
                await self._end(state, actor="stanch", reason=f"request {rnd.outcome.value}")
                return

        if not await self._grant():
            await self._end(ElevationState.failed, actor="stanch", reason=self.end_reason or "")
            return

        while True:
            ext = self._pending_round("extend")
            await _wait(self._active_event(ext),
                        min(d for d in (self.expires_at, ext.deadline if ext else None) if d))
            if self.revoke_request is not None:
                await self._end(ElevationState.revoked, actor=self.revoke_request.principal.id,
                                reason=self.revoke_request.reason)
                return
            assert self.expires_at is not None
            if workflow.now() >= self.expires_at:
                await self._end(ElevationState.expired, actor="stanch:expiry",
                                reason="the elevation's time ran out")
                return
            if ext is not None:
                if ext.outcome is ApprovalOutcome.pending and ext.deadline is not None \
                        and workflow.now() >= ext.deadline:
                    self._expire_round(ext)
                if ext.outcome is ApprovalOutcome.approved:
                    await self._extend(ext)
            if self.extend_queue:
                req = self.extend_queue[0]
                await self._open_round("extend", req.principal.id, req.reason,
                                       until=self._extension_until(req.duration))
                self.extend_queue.pop(0)

    def _active_event(self, ext: Round | None) -> Callable[[], bool]:
        def happened() -> bool:
            return (self.revoke_request is not None or bool(self.extend_queue)
                    or (ext is not None and ext.outcome is not ApprovalOutcome.pending))
        return happened

    # ------------------------------------------------------------------ approval rounds
    async def _open_round(self, kind: str, requested_by: str, reason: str, *,
                          until: datetime | None = None) -> Round:
        now = workflow.now()
        by_pattern: dict[str, list[str]] = {}
        for scope in self.inp.scopes:
            by_pattern.setdefault(self.inp.policies[scope].pattern, []).append(scope)
        groups = sorted({g for s in self.inp.scopes for g in self.inp.policies[s].groups
                         if g != "owner" and not g.startswith("user:")})
        members: dict[str, list[str]] = {}
        if groups:
            members = await workflow.execute_activity(
                "snapshot_approvers", groups, result_type=dict[str, list[str]],
                start_to_close_timeout=QUICK, retry_policy=QUICK_RETRY)
        rnd = Round(kind=kind, requested_by=requested_by, reason=reason, requested_at=now,
                    until=until, capped=bool(until and until == self.cap_at))
        for pattern, scopes in by_pattern.items():
            policy = self.inp.policies[scopes[0]]
            rnd.approvals.append(PolicyApproval(pattern=pattern, scopes=scopes,
                                                state=approvals.new_request(
                policy.approval(), now=now,
                members={g: members[g] for g in policy.groups if g in members},
                requester=requested_by, subject_key=self.inp.principal.key, owner=None)))
        self.rounds.append(rnd)
        self._notify(f"elevation_{kind}_requested", self._approver_groups(),
                     f"{kind} elevation of {self.inp.principal.key}: "
                     f"{', '.join(self.inp.scopes)}", actions=True, deadline=rnd.deadline)
        return rnd

    def _pending_round(self, kind: str) -> Round | None:
        for rnd in self.rounds:
            if rnd.kind == kind and rnd.outcome is ApprovalOutcome.pending:
                return rnd
        return None

    def _settle(self, rnd: Round) -> None:
        outcomes = [a.state.outcome for a in rnd.approvals]
        if any(o in (ApprovalOutcome.denied, ApprovalOutcome.timed_out) for o in outcomes):
            rnd.outcome = (ApprovalOutcome.denied if ApprovalOutcome.denied in outcomes
                           else ApprovalOutcome.timed_out)
            for a in rnd.approvals:
                if a.state.outcome is ApprovalOutcome.pending:
                    a.state.outcome = ApprovalOutcome.cancelled
        elif all(o is ApprovalOutcome.approved for o in outcomes):
            rnd.outcome = ApprovalOutcome.approved

    def _expire_round(self, rnd: Round) -> None:
        for a in rnd.approvals:
            if a.state.outcome is ApprovalOutcome.pending:
                approvals.expire(a.state)
        self._settle(rnd)
        self._audit(AuditType.approval_timeout, actor="stanch",
                    data={"round": rnd.kind, "outcome": rnd.outcome.value})

    def _cancel_round(self, rnd: Round) -> None:
        rnd.outcome = ApprovalOutcome.cancelled
        for a in rnd.approvals:
            if a.state.outcome is ApprovalOutcome.pending:
                a.state.outcome = ApprovalOutcome.cancelled

    def _break_glass_allowed(self) -> bool:
        return self.inp.break_glass and all(
            self.inp.policies[s].break_glass_allowed for s in self.inp.scopes)

    # ------------------------------------------------------------------ grant, extend, end
    async def _grant(self) -> bool:
        self.state = ElevationState.granting
        self.grant_started = True
        now = workflow.now()
        max_duration = min(self.inp.policies[s].max_duration for s in self.inp.scopes)
        self.granted_at = now
        self.cap_at = now + max_duration
        self.expires_at = now + min(self.inp.duration, max_duration)
        for v in self.leases:
            try:
                res: AcquireResult = await workflow.execute_activity(
                    "acquire_scope_lease", self._lease_request(v), result_type=AcquireResult,
                    start_to_close_timeout=LEASE_CALL, schedule_to_close_timeout=GRANT_BUDGET,
                    retry_policy=GRANT_RETRY,
                    # Wait for a cancelled acquire to really stop, so the release that follows
                    # cannot overtake it and leave a lease behind.
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
            except ActivityError as err:
                self.end_reason = f"grant of {v.scope!r} failed: {_cause(err)}"
                return False
            v.granted, v.preexisting = True, res.preexisting
        self.state = ElevationState.active
        self._audit(AuditType.elevation_granted, actor=self.inp.requested_by, data={
            "scopes": self.inp.scopes, "granted_at": now.isoformat(),
            "expires_at": self.expires_at.isoformat(), "cap_at": self.cap_at.isoformat(),
            "break_glass": self._break_glass_allowed(),
            "preexisting": [v.scope for v in self.leases if v.preexisting],
            "approvers": self._voters("grant")})
        self._notify("elevation_granted", [f"user:{self.inp.requested_by}"],
                     f"elevation of {self.inp.principal.key} granted until "
                     f"{self.expires_at.isoformat()}")
        return True

    def _extension_until(self, duration: timedelta) -> datetime:
        assert self.expires_at is not None and self.cap_at is not None
        return min(self.expires_at + duration, self.cap_at)

    async def _extend(self, rnd: Round) -> None:
        assert rnd.until is not None and self.expires_at is not None
        previous, self.expires_at = self.expires_at, max(self.expires_at, rnd.until)
        for v in self.leases:
            # Renewing moves the ledger's backstop too; the lease is already held.
            await workflow.execute_activity(
                "acquire_scope_lease", self._lease_request(v), result_type=AcquireResult,
                start_to_close_timeout=LEASE_CALL, retry_policy=REVOKE_RETRY)
        self._audit(AuditType.elevation_extended, actor=rnd.requested_by, reason=rnd.reason,
                    data={"from": previous.isoformat(), "to": self.expires_at.isoformat(),
                          "capped": rnd.capped, "cap_at": self.cap_at.isoformat()
                          if self.cap_at else None, "approvers": self._voters("extend")})

    async def _end(self, state: ElevationState, *, actor: str, reason: str) -> None:
        if self.state in ENDED:
            return
        # Not guarded against `revoking`: a cancellation can interrupt an ending, and the
        # ending must then run again (each release is idempotent at the ledger).
        self.extend_queue.clear()
        for rnd in self.rounds:
            if rnd.outcome is ApprovalOutcome.pending:
                self._cancel_round(rnd)
        granted = self.grant_started
        if granted:
            self.state = ElevationState.revoking
            for v in self.leases:
                # Release even a lease whose acquire we never saw return (cancelled mid-grant):
                # releasing an unknown lease is a no-op at the ledger.
                res: ReleaseResult = await workflow.execute_activity(
                    "release_scope_lease", self._lease_request(v, actor=actor, reason=reason),
                    result_type=ReleaseResult, start_to_close_timeout=LEASE_CALL,
                    retry_policy=REVOKE_RETRY)
                v.released, v.removed = True, res.removed
                if v.preexisting is None and res.held:
                    v.preexisting = res.preexisting
        self.ended_at = workflow.now()
        self.ended_by, self.end_reason = actor, reason
        self.state = state
        if not granted:
            self._audit(AuditType.elevation_revoked, actor=actor, reason=reason,
                        data={"outcome": state.value, "granted": False})
            self._notify("elevation_ended", [f"user:{self.inp.requested_by}"],
                         f"elevation of {self.inp.principal.key} {state.value}")
            return
        self._audit(AuditType.elevation_revoked, actor=actor, reason=reason, data={
            "outcome": state.value, "granted": True,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "removed": [v.scope for v in self.leases if v.removed],
            "kept": {v.scope: "held before Stanch" if v.preexisting else "another grant"
                     for v in self.leases if not v.removed}})
        await self._review()

    async def _review(self) -> None:
        assert self.granted_at is not None and self.ended_at is not None
        summary: ReviewSummary = await workflow.execute_activity(
            "elevation_review", ReviewRequest(elevation_id=self._wid,
                                             principal=self.inp.principal,
                                             since=self.granted_at, until=self.ended_at),
            result_type=ReviewSummary, start_to_close_timeout=timedelta(minutes=1),
            retry_policy=QUICK_RETRY)
        self.review = summary
        self._audit(AuditType.elevation_review, actor="stanch", data={
            "since": summary.since.isoformat(), "until": summary.until.isoformat(),
            "actors": summary.actors, "count": summary.count, "by_type": summary.by_type,
            "records": [r.get("seq") for r in summary.records]})
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(summary.by_type.items())) or "nothing"
        self._notify("elevation_review", self._approver_groups(),
                     f"review: {self.inp.principal.key} did {summary.count} audited thing(s) "
                     f"under the elevation ({kinds})")

    # ------------------------------------------------------------------ updates
    @workflow.update
    async def decide(self, inp: DecisionInput) -> DecisionResult:
        rnd = self._open_decision_round()
        assert rnd is not None  # the validator guarantees it
        for a in rnd.approvals:
            if approvals.refusal(a.state, inp.principal, inp.verdict) is None:
                approvals.record(a.state, Vote(principal=inp.principal.id, verdict=inp.verdict,
                                               comment=inp.comment, at=workflow.now(),
                                               channel=inp.channel))
        self._settle(rnd)
        self._audit(AuditType.decision_recorded, actor=inp.principal.id, reason=inp.comment,
                    data={"round": rnd.kind, "verdict": inp.verdict.value,
                          "outcome": rnd.outcome.value, "channel": inp.channel,
                          "groups": inp.principal.groups})
        return DecisionResult(state=self.state, round=rnd.kind, outcome=rnd.outcome,
                              approvals={a.pattern: a.state.approvals for a in rnd.approvals},
                              quorum={a.pattern: a.state.policy.quorum for a in rnd.approvals})

    @decide.validator
    def _validate_decide(self, inp: DecisionInput) -> None:
        rnd = self._open_decision_round()
        if rnd is None:
            raise ApplicationError("not pending: this elevation is not waiting for a decision",
                                   type="NotPending")
        reasons = [approvals.refusal(a.state, inp.principal, inp.verdict)
                   for a in rnd.approvals if a.state.outcome is ApprovalOutcome.pending]
        if reasons and all(r is not None for r in reasons):
            reason = str(reasons[0]).replace("the identity under containment",
                                             "the principal being elevated")
            raise ApplicationError(reason, type="DecisionRefused")

    @workflow.update
    async def extend(self, inp: ExtendInput) -> ExtendResult:
        until = self._extension_until(inp.duration)
        self.extend_queue.append(inp)
        await workflow.wait_condition(lambda: not self.extend_queue or self.state in ENDED)
        return ExtendResult(state=self.state, expires_at=self.expires_at,
                            requested_until=until, capped=until < self.expires_at + inp.duration
                            if self.expires_at else False, cap_at=self.cap_at)

    @extend.validator
    def _validate_extend(self, inp: ExtendInput) -> None:
        if self.state is not ElevationState.active or self.revoke_request is not None:
            raise ApplicationError(f"not active: the elevation is {self.state.value}",
                                   type="NotPending")
        if not inp.reason.strip():
            raise ApplicationError("a reason is required", type="ReasonRequired")
        if inp.duration <= timedelta(0):
            raise ApplicationError("duration must be positive", type="InvalidDuration")
        if self._pending_round("extend") is not None or self.extend_queue:
            raise ApplicationError("an extension is already waiting for approval",
                                   type="NotPending")
        assert self.expires_at is not None and self.cap_at is not None
        if self.expires_at >= self.cap_at:
            raise ApplicationError(
                f"cap reached: the policy allows at most until {self.cap_at.isoformat()} "
                "(counted from the first grant)", type="CapReached")

    @workflow.update
    async def revoke(self, inp: RevokeInput) -> ElevationStatus:
        if self.revoke_request is None:
            self.revoke_request = inp
        await workflow.wait_condition(lambda: self.state in ENDED)
        return self.status()

    @revoke.validator
    def _validate_revoke(self, inp: RevokeInput) -> None:
        if self.state in ENDED or self.revoke_request is not None:
            raise ApplicationError(f"already ending: the elevation is {self.state.value}",
                                   type="Closed")
        if not inp.reason.strip():
            raise ApplicationError("a reason is required", type="ReasonRequired")
        if not self._may_revoke(inp.principal):
            raise ApplicationError(
                f"not allowed: {inp.principal.id} is not the requester, an approver of these "
                "scopes or a SOC admin", type="DecisionRefused")

    @workflow.query
    def status(self) -> ElevationStatus:
        pending = next((r for r in reversed(self.rounds)
                        if r.outcome is ApprovalOutcome.pending), None)
        return ElevationStatus(
            workflow_id=self._wid, principal=self.inp.principal.key, scopes=self.inp.scopes,
            state=self.state, requested_by=self.inp.requested_by, reason=self.inp.reason,
            ticket=self.inp.ticket, break_glass=self._break_glass_allowed(),
            duration=self.inp.duration, requested_at=self.requested_at,
            granted_at=self.granted_at, expires_at=self.expires_at, cap_at=self.cap_at,
            ended_at=self.ended_at, ended_by=self.ended_by, end_reason=self.end_reason,
            pending=self._round_view(pending) if pending else None,
            rounds=[self._round_view(r) for r in self.rounds], leases=self.leases,
            review=self.review,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def _wid(self) -> str:
        return workflow.info().workflow_id

    def _open_decision_round(self) -> Round | None:
        if self.state in ENDED or self.revoke_request is not None:
            return None
        return next((r for r in self.rounds if r.outcome is ApprovalOutcome.pending), None)

    def _may_revoke(self, p: Principal) -> bool:
        # Ending privilege early is always the safe direction: the requester, the principal
        # itself, any approver of these scopes and SOC admins may do it, without quorum.
        if p.id == self.inp.requested_by or Role.admin in p.roles:
            return True
        if self.inp.principal.key in p.identity_keys:
            return True
        if any(approvals.eligible(a.state, p) for r in self.rounds for a in r.approvals):
            return True
        return bool(set(p.groups) & set(self._approver_groups()))

    def _approver_groups(self) -> list[str]:
        return sorted({g for s in self.inp.scopes for g in self.inp.policies[s].groups})

    def _voters(self, kind: str) -> list[str]:
        rnd = next((r for r in reversed(self.rounds) if r.kind == kind), None)
        if rnd is None:
            return []
        return sorted({v.principal for a in rnd.approvals for v in a.state.votes})

    def _round_view(self, rnd: Round) -> dict[str, Any]:
        return {
            "kind": rnd.kind, "requested_by": rnd.requested_by, "reason": rnd.reason,
            "requested_at": rnd.requested_at.isoformat(), "outcome": rnd.outcome.value,
            "until": rnd.until.isoformat() if rnd.until else None, "capped": rnd.capped,
            "deadline": rnd.deadline.isoformat() if rnd.deadline else None,
            "approvals": [{"policy": a.pattern, "scopes": a.scopes, "groups": a.state.groups,
                           "quorum": a.state.policy.quorum, "approvals": a.state.approvals,
                           "denials": a.state.denials, "outcome": a.state.outcome.value,
                           "votes": [v.model_dump(mode="json") for v in a.state.votes]}
                          for a in rnd.approvals],
        }

    def _lease_request(self, v: ScopeLeaseView, *, actor: str | None = None,
                       reason: str = "") -> LeaseRequest:
        return LeaseRequest(principal=self.inp.principal, scope=v.scope, lease_id=v.lease_id,
                            elevation_id=self._wid, expires_at=self.expires_at,
                            actor=actor or self.inp.requested_by,
                            reason=reason or self.inp.reason,
                            namespace=self.inp.ledger_namespace)

    def _audit(self, type_: AuditType, *, actor: str, reason: str | None = None,
               data: dict[str, Any] | None = None) -> None:
        """Fire-and-collect: auditing must not delay the grant or, worse, the revoke."""
        event = AuditEvent(
            type=type_, at=workflow.now(), actor=actor, subject=self.inp.principal.key,
            workflow_id=self._wid, reason=reason if reason is not None else self.inp.reason,
            ticket=self.inp.ticket, data=data or {},
            dedup_key=f"{self._wid}:{workflow.uuid4().hex}")
        self._spawn(workflow.execute_activity(
            "record_audit", event, start_to_close_timeout=QUICK, retry_policy=QUICK_RETRY))

    def _notify(self, kind: str, targets: list[str], title: str, *, actions: bool = False,
                deadline: datetime | None = None) -> None:
        req = NotifyRequest(
            notification_id=f"{self._wid}:{kind}:{workflow.uuid4().hex[:8]}", kind=kind,
            targets=targets, workflow_id=self._wid, subject=self.inp.principal.key,
            title=title, text=self.inp.reason,
            fields={"scopes": ", ".join(self.inp.scopes), "state": self.state.value,
                    "requested_by": self.inp.requested_by, "ticket": self.inp.ticket or ""},
            actions=actions, deadline=deadline)
        self._spawn(workflow.execute_activity(
            "notify", req, start_to_close_timeout=QUICK,
            schedule_to_close_timeout=timedelta(minutes=10), retry_policy=QUICK_RETRY))

    def _spawn(self, coro: Any) -> None:
        self.tasks = [t for t in self.tasks if not t.done()]
        self.tasks.append(asyncio.ensure_future(coro))

    async def _drain_tasks(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.tasks = []


# =========================================================================== ledger


@workflow.defn
class ScopeLeaseWorkflow:
    """The live leases of one scope on one principal; grants for the first, removes after
    the last, and never removes what the principal held before Stanch."""

    @workflow.init
    def __init__(self, inp: LedgerInput) -> None:
        self.principal = inp.principal
        self.scope = inp.scope
        self.grace = inp.backstop_grace
        self.leases: dict[str, Lease] = {lz.lease_id: lz for lz in inp.leases}
        self.preexisting = inp.preexisting
        self.granted = inp.granted
        self.released: list[ReleaseResult] = list(inp.released)
        self.lock = asyncio.Lock()
        self.updates = 0
        self.tasks: list[asyncio.Task[Any]] = []

    @workflow.run
    async def run(self, inp: LedgerInput) -> LedgerStatus:
        while True:
            await _wait(lambda: self._idle() or self._can_due() or bool(self._overdue()),
                        self._next_backstop())
            for lease in self._overdue():
                # The elevation never released this lease (terminated, or stuck far past
                # its expiry): the ledger ends it itself, so no grant outlives its time.
                async with self.lock:
                    if lease.lease_id in self.leases:
                        await self._release(ReleaseInput(
                            lease_id=lease.lease_id, actor="stanch:backstop",
                            reason=f"lease {self.grace} past its expiry"), backstop=True)
            if self._idle():
                break
            if self._can_due():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(LedgerInput(
                    principal=self.principal, scope=self.scope, backstop_grace=self.grace,
                    leases=list(self.leases.values()), preexisting=self.preexisting,
                    granted=self.granted, released=self.released[-RELEASES_KEPT:]))
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        return self.status()

    def _idle(self) -> bool:
        return not self.leases and not self.lock.locked() and workflow.all_handlers_finished()

    def _can_due(self) -> bool:
        return (self.updates >= MAX_LEDGER_UPDATES_PER_RUN
                or workflow.info().is_continue_as_new_suggested())

    def _overdue(self) -> list[Lease]:
        now = workflow.now()
        return [lz for lz in self.leases.values()
                if lz.expires_at is not None and lz.expires_at + self.grace <= now]

    def _next_backstop(self) -> datetime | None:
        ends = [lz.expires_at + self.grace for lz in self.leases.values() if lz.expires_at]
        return min(ends, default=None)

    @workflow.update
    async def acquire(self, inp: AcquireInput) -> AcquireResult:
        self.updates += 1
        async with self.lock:
            held = self.leases.get(inp.lease_id)
            if held is not None:
                held.expires_at = inp.expires_at  # a renewal (extension) or a retry
                return AcquireResult(lease_id=inp.lease_id, preexisting=bool(self.preexisting),
                                     granted=False, holders=len(self.leases))
            granted = False
            if not self.leases and not self.granted:
                try:
                    res: GrantResult = await workflow.execute_activity(
                        "grant_scope",
                        self._change(f"grant-{inp.lease_id}", inp.actor, inp.reason),
                        result_type=GrantResult, start_to_close_timeout=timedelta(seconds=30),
                        schedule_to_close_timeout=GRANT_BUDGET, retry_policy=GRANT_RETRY)
                except ActivityError as err:
                    raise ApplicationError(f"grant of {self.scope!r} failed: {_cause(err)}",
                                           type="GrantFailed") from err
                self.preexisting = res.preexisting
                self.granted = granted = not res.preexisting
            self.leases[inp.lease_id] = Lease(lease_id=inp.lease_id,
                                              elevation_id=inp.elevation_id,
                                              expires_at=inp.expires_at,
                                              acquired_at=workflow.now())
            return AcquireResult(lease_id=inp.lease_id, preexisting=bool(self.preexisting),
                                 granted=granted, holders=len(self.leases))

    @acquire.validator
    def _validate_acquire(self, inp: AcquireInput) -> None:
        if any(r.lease_id == inp.lease_id for r in self.released):
            raise ApplicationError(f"lease {inp.lease_id} was already released",
                                   type="LeaseReleased")

    @workflow.update
    async def release(self, inp: ReleaseInput) -> ReleaseResult:
        self.updates += 1
        async with self.lock:
            return await self._release(inp)

    async def _release(self, inp: ReleaseInput, *, backstop: bool = False) -> ReleaseResult:
        prior = next((r for r in self.released if r.lease_id == inp.lease_id), None)
        if prior is not None:
            return prior
        if inp.lease_id not in self.leases:
            return ReleaseResult(lease_id=inp.lease_id, held=False, removed=False,
                                 holders=len(self.leases), preexisting=bool(self.preexisting))
        lease = self.leases.pop(inp.lease_id)
        removed, sessions = False, []
        preexisting = bool(self.preexisting)
        if not self.leases and self.granted:
            res: RevokeScopeResult = await workflow.execute_activity(
                "revoke_scope", self._change(f"revoke-{inp.lease_id}", inp.actor, inp.reason,
                                             lease_ids=[lease.lease_id]),
                result_type=RevokeScopeResult, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=REVOKE_RETRY)
            removed, sessions = res.removed, res.sessions_revoked
            self.granted = False
        if not self.leases:
            self.preexisting = None  # the next first lease looks again
        result = ReleaseResult(lease_id=inp.lease_id, held=True, removed=removed,
                               holders=len(self.leases), preexisting=preexisting,
                               sessions_revoked=sessions)
        self.released = [*self.released, result][-RELEASES_KEPT:]
        if backstop:
            event = AuditEvent(
                type=AuditType.elevation_revoked, at=workflow.now(), actor=inp.actor,
                subject=self.principal.key, workflow_id=lease.elevation_id,
                reason=inp.reason, data={"scope": self.scope, "lease_id": lease.lease_id,
                                         "removed": removed, "backstop": True},
                dedup_key=f"{workflow.info().workflow_id}:backstop:{lease.lease_id}")
            self.tasks.append(asyncio.ensure_future(workflow.execute_activity(
                "record_audit", event, start_to_close_timeout=QUICK,
                retry_policy=QUICK_RETRY)))
        return result

    @workflow.query
    def status(self) -> LedgerStatus:
        return LedgerStatus(principal=self.principal.key, scope=self.scope,
                            leases=list(self.leases.values()), preexisting=self.preexisting,
                            granted=self.granted)

    def _change(self, action_id: str, actor: str, reason: str, *,
                lease_ids: list[str] | None = None) -> ScopeChangeRequest:
        return ScopeChangeRequest(action_id=action_id, ledger_id=workflow.info().workflow_id,
                                  principal=self.principal, scope=self.scope, actor=actor,
                                  reason=reason, lease_ids=lease_ids or [])
