"""ContainmentWorkflow: one per identity. Plan, ask, act, record, wait, undo.

Alerts join through the ``add_alert`` update (update-with-start from the API). Each new
alert is planned with the same pure planner that ``stanch playbook simulate`` uses; new
steps are queued in ladder order and run one at a time: approval when the step asks for
it, then the provider action activity (which audits intent and result itself), then a
``revert_after`` deadline when the step is time-bound. Decisions, confirmations, rollback
and resolution are updates with validators, so a refused call is refused synchronously with
a reason and leaves no trace in history (the API audits refusals).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from stanch.models import (
        HUMAN_KINDS,
        Action,
        ActionRequest,
        ActionResult,
        ActionStatus,
        AuditEvent,
        AuditType,
        Category,
        IdentityContext,
        NotifyRequest,
        PlanState,
        Principal,
    )
    from stanch.playbook import plan
    from stanch.ssf.subjects import subject_of
    from workflows import approvals
    from workflows.approvals import ApprovalOutcome, Vote
    from workflows.containment_types import (
        ACTIVE,
        DONE,
        AckInput,
        ApprovalRequestInput,
        CarriedState,
        ConfirmInput,
        ContainmentInput,
        ContainmentState,
        ContainmentStatus,
        DecisionInput,
        DecisionResult,
        NewAlertInput,
        NewAlertResult,
        ResolveInput,
        ResolveVerdict,
        Review,
        RollbackInput,
        RollbackResult,
        StepState,
        StepStatus,
        StepView,
        UndoneStep,
    )

SA_KIND = SearchAttributeKey.for_keyword("StanchIdentityKind")
SA_RUNG = SearchAttributeKey.for_int("StanchRung")
SA_STATUS = SearchAttributeKey.for_keyword("StanchStatus")

def initial_search_attributes(identity: IdentityContext) -> TypedSearchAttributes:
    """Set at start, so the first alert's upsert has nothing to change."""
    return TypedSearchAttributes([
        SearchAttributePair(SA_KIND, identity.ref.kind.value),
        SearchAttributePair(SA_RUNG, 0),
        SearchAttributePair(SA_STATUS, ContainmentState.active.value),
    ])


ACTION_TIMEOUT = timedelta(seconds=30)
ACTION_HEARTBEAT = timedelta(seconds=5)  # the activity beats every second
ACTION_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,  # transient errors retry until schedule_to_close; permanent stop
    non_retryable_error_types=["PermanentProviderError", "UnknownProvider"],
)
ACTION_BUDGET = timedelta(hours=1)  # 1-10-60: a step not done within the hour goes to a human
QUICK = timedelta(seconds=10)
QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200),
                          maximum_interval=timedelta(seconds=10), maximum_attempts=0)
# A local activity needs a bound on all its attempts; an audit store down for a day is an
# outage someone is paged for, and the record is retried until then.
QUICK_BUDGET = timedelta(days=1)
SEEN_ALERTS_KEPT = 1000


@workflow.defn
class ContainmentWorkflow:
    @workflow.init
    def __init__(self, inp: ContainmentInput) -> None:
        c = inp.carried or CarriedState()
        self.identity = inp.identity
        self.use_sa = inp.search_attributes
        self.idle_close_after = inp.idle_close_after
        self.max_updates = inp.max_updates_per_run
        self.notifications = inp.notifications
        self.steps: list[StepState] = list(c.steps)
        self.seen: list[str] = list(c.seen_alert_ids)
        self._seen_set = set(self.seen)
        self.alerts_seen = c.alerts_seen
        self.categories: list[str] = list(c.categories_seen)
        self.max_severity_rank = c.max_severity_rank
        self.reviews: list[Review] = list(c.reviews)
        self.state = c.state
        self.playbooks = list(c.playbooks)
        self.started_at = c.started_at
        self.first_alert_received_at = c.first_alert_received_at
        self.lock = asyncio.Lock()
        self.updates_this_run = 0
        self.rollback_requests: list[RollbackInput] = []
        self.rollback_results: dict[int, RollbackResult] = {}
        self.rollback_seq = 0
        self.resolve_request: ResolveInput | None = None
        self.closed = False
        self.tasks: list[asyncio.Task[Any]] = []
        self.last_activity = workflow.now()

    # ------------------------------------------------------------------ main loop
    @workflow.run
    async def run(self, inp: ContainmentInput) -> ContainmentStatus:
        if self.started_at is None:
            self.started_at = workflow.now()
        while True:
            try:
                await workflow.wait_condition(self._has_work,
                                              timeout=self._until_next_deadline())
            except TimeoutError:
                pass  # a deadline is due: approval escalation/expiry or a revert
            if self.rollback_requests:
                await self._rollback_all()
                continue
            if self.resolve_request is not None:
                await self._resolve(self.resolve_request)
                break
            await self._fire_due_deadlines()
            step = self._next_runnable()
            if step is not None:
                await self._advance(step)
            if self._idle_expired():
                workflow.logger.info("containment.idle_close", extra={"wf": self._wid})
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._carry(inp))
        self.closed = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._drain_tasks()
        self._set_sa()
        return self.status()

    def _has_work(self) -> bool:
        if self.rollback_requests or self.resolve_request is not None:
            return True
        if self._next_runnable() is not None:
            return True
        now = workflow.now()
        return any(d <= now for d in self._deadlines()) or self._should_continue_as_new()

    def _deadlines(self) -> list[Any]:
        out = []
        for s in self.steps:
            if s.status is StepStatus.awaiting_approval and s.approval is not None:
                out.append(s.approval.deadline)
                nxt = s.approval.next_stage_at()
                if nxt is not None:
                    out.append(nxt)
            if s.status is StepStatus.applied and s.revert_at is not None:
                out.append(s.revert_at)
        return out

    def _until_next_deadline(self) -> timedelta | None:
        now = workflow.now()
        candidates = self._deadlines()
        if not self.closed and not any(s.status in ACTIVE for s in self.steps):
            candidates.append(self.last_activity + self.idle_close_after)
        if not candidates:
            return None
        return max(min(candidates) - now, timedelta(milliseconds=1))

    def _idle_expired(self) -> bool:
        if any(s.status in ACTIVE for s in self.steps) or self._deadlines():
            return False
        return workflow.now() >= self.last_activity + self.idle_close_after

    def _should_continue_as_new(self) -> bool:
        if any(s.status is StepStatus.applying for s in self.steps):
            return False
        return (self.updates_this_run >= self.max_updates
                or workflow.info().is_continue_as_new_suggested())

    def _next_runnable(self) -> StepState | None:
        # Ladder order: a step waiting for approval holds the rungs above it.
        for s in self.steps:
            if s.status in (StepStatus.queued, StepStatus.approved):
                return s
            if s.status in (StepStatus.awaiting_approval, StepStatus.applying):
                return None
        return None

    # ------------------------------------------------------------------ one step
    async def _advance(self, s: StepState) -> None:
        async with self.lock:
            if s.status is StepStatus.queued and self._needs_approval(s):
                await self._request_approval(s)
                return
            if s.step.action is Action.notify:
                await self._notify_step(s)
                return
            await self._apply(s)

    def _needs_approval(self, s: StepState) -> bool:
        if s.step.approval is None:
            return False
        if s.break_glass and s.step.break_glass:
            return False  # break-glass: the playbook allows it; review opened on apply
        return True

    async def _request_approval(self, s: StepState) -> None:
        policy = s.step.approval
        assert policy is not None
        groups = [g for g in policy.groups if g != "owner" and not g.startswith("user:")]
        for stage in policy.escalation:
            groups += [g for g in stage.groups if g not in groups]
        request = approvals.new_request(
            policy, now=workflow.now(), members={}, requester=s.requested_by,
            subject_key=self.identity.ref.key, owner=self.identity.owner,
            subject_names=self._subject_names(),
        )
        requested = {
            "groups": request.groups, "quorum": policy.quorum,
            "deny_quorum": policy.deny_quorum, "deadline": request.deadline.isoformat(),
            "on_timeout": policy.on_timeout.value,
            **({"loses": s.step.loses, "loss_gate": s.step.loss_gate}
               if s.step.loss_gate else {}),
        }
        if _patched(APPROVAL_IN_ONE_STEP):
            # Who may decide, read now, and the record that the request was made: one
            # local activity, the record appended after the snapshot as before.
            request.members = await _quick("request_approval", ApprovalRequestInput(
                groups=groups, event=self._audit_event(
                    AuditType.approval_requested, s, data=requested)),
                result_type=dict[str, list[str]])
            s.approval = request
            s.status = StepStatus.awaiting_approval
            self._set_sa()
        else:
            if groups:
                request.members = await _quick("snapshot_approvers", groups,
                                               result_type=dict[str, list[str]])
            s.approval = request
            s.status = StepStatus.awaiting_approval
            self._set_sa()
            self._audit(AuditType.approval_requested, s, data=requested)
        self._notify(s, "approval_requested", s.approval.groups, actions=True)

    async def _apply(self, s: StepState) -> None:
        s.status = StepStatus.applying
        req = ActionRequest(
            action_id=s.action_id, workflow_id=self._wid, identity=self.identity.ref,
            action=s.step.action, params=s.step.params, reason=s.reason or s.step.description,
            actor=s.requested_by or f"playbook:{s.step.playbook}", alert_ids=s.alert_ids,
            ticket=s.ticket, subject=subject_of(self.identity),
        )
        try:
            result: ActionResult = await workflow.execute_activity(
                "apply_action", req, result_type=ActionResult,
                start_to_close_timeout=ACTION_TIMEOUT, schedule_to_close_timeout=ACTION_BUDGET,
                heartbeat_timeout=ACTION_HEARTBEAT,
                retry_policy=ACTION_RETRY,
            )
        except ActivityError as err:
            s.status = StepStatus.failed
            s.error = _cause(err)
            workflow.logger.warning("containment.step_failed",
                                    extra={"wf": self._wid, "step": s.step.step_id})
            # The activity audited the permanent failure; a human must look now.
            self._notify(s, "action_failed", self._escalation_targets(s), actions=False)
            self._set_sa()
            return
        s.result = result
        s.applied_at = workflow.now()
        s.status = (StepStatus.applied if result.status is ActionStatus.applied
                    else StepStatus.already)
        if s.status is StepStatus.applied and s.step.revert_after and result.undo is not None:
            s.revert_at = workflow.now() + s.step.revert_after
        if s.step.break_glass and (s.break_glass or s.step.approval is None):
            # Glass was broken (a responder skipped approval, or the playbook runs an
            # irreversible step unattended): notify loudly and open a review to acknowledge.
            self._open_review(s)
        self.last_activity = workflow.now()
        self._set_sa()
        if s.step.notify:
            self._notify(s, "contained", s.step.notify, actions=False)

    async def _notify_step(self, s: StepState) -> None:
        targets = s.step.notify or ([f"user:{self.identity.owner}"] if self.identity.owner else [])
        self._notify(s, "notice", targets, actions=False)
        s.status = StepStatus.applied
        s.applied_at = workflow.now()

    def _open_review(self, s: StepState) -> None:
        review = Review(review_id=f"review-{s.action_id}", step_id=s.step.step_id,
                        opened_at=workflow.now(), requested_by=s.requested_by,
                        reason=s.reason)
        self.reviews.append(review)
        self._audit(AuditType.break_glass, s,
                    data={"break_glass_reason": s.step.break_glass_reason})
        self._audit(AuditType.review_opened, s, data={"review_id": review.review_id})
        groups = s.step.approval.groups if s.step.approval else []
        self._notify(s, "break_glass", groups, actions=False)

    # ------------------------------------------------------------------ deadlines
    async def _fire_due_deadlines(self) -> None:
        now = workflow.now()
        for s in self.steps:
            a = s.approval
            if s.status is StepStatus.awaiting_approval and a is not None:
                nxt = a.next_stage_at()
                while nxt is not None and nxt <= now and nxt < a.deadline:
                    added = approvals.escalate(a)
                    self._audit(AuditType.approval_escalated, s,
                                data={"stage": a.stage, "added_groups": added})
                    self._notify(s, "escalated", added or a.groups, actions=True)
                    nxt = a.next_stage_at()
                if a.deadline <= now:
                    outcome = approvals.expire(a)
                    self._audit(AuditType.approval_timeout, s, data={
                        "outcome": outcome.value, "on_timeout": a.policy.on_timeout.value,
                        "approvals": a.approvals, "denials": a.denials})
                    s.status = (StepStatus.approved if outcome is ApprovalOutcome.approved
                                else StepStatus.timed_out)
                    self._set_sa()
            if s.status is StepStatus.applied and s.revert_at is not None and s.revert_at <= now:
                async with self.lock:
                    await self._undo(s, reason=f"revert_after {s.step.revert_after} elapsed",
                                     actor="stanch:revert_after")

    async def _undo(self, s: StepState, *, reason: str, actor: str) -> UndoneStep:
        assert s.result is not None
        if s.result.undo is None or s.result.irreversible:
            return UndoneStep(step_id=s.step.step_id, action=s.step.action.value,
                              outcome="irreversible",
                              detail=s.result.message or "no undo exists for this action")
        req = ActionRequest(
            action_id=f"{s.action_id}-undo", workflow_id=self._wid, identity=self.identity.ref,
            action=s.step.action, params={"original": s.result.model_dump(mode="json")},
            reason=reason, actor=actor, alert_ids=s.alert_ids, ticket=s.ticket,
            subject=subject_of(self.identity),
        )
        try:
            undo: ActionResult = await workflow.execute_activity(
                "undo_action", req, result_type=ActionResult,
                start_to_close_timeout=ACTION_TIMEOUT, schedule_to_close_timeout=ACTION_BUDGET,
                heartbeat_timeout=ACTION_HEARTBEAT,
                retry_policy=ACTION_RETRY,
            )
        except ActivityError as err:
            s.error = _cause(err)
            s.revert_at = None
            self._notify(s, "undo_failed", self._escalation_targets(s), actions=False)
            return UndoneStep(step_id=s.step.step_id, action=s.step.action.value,
                              outcome="failed", detail=s.error)
        s.undo_result = undo
        s.status = StepStatus.reverted
        s.revert_at = None
        self.last_activity = workflow.now()
        self._set_sa()
        return UndoneStep(step_id=s.step.step_id, action=s.step.action.value, outcome="reverted",
                          detail=undo.message)

    # ------------------------------------------------------------------ rollback / resolve
    async def _rollback_all(self) -> None:
        async with self.lock:
            requests, self.rollback_requests = self.rollback_requests, []
            req = requests[0]
            result = RollbackResult()
            for s in self.steps:
                if s.status in (StepStatus.queued, StepStatus.awaiting_approval,
                                StepStatus.approved):
                    s.status = StepStatus.cancelled
                    if s.approval is not None:
                        s.approval.outcome = ApprovalOutcome.cancelled
            for s in reversed(self.steps):
                if s.status is StepStatus.applied and s.result is not None:
                    if s.step.action is Action.notify:
                        continue
                    result.steps.append(await self._undo(
                        s, reason=f"rollback: {req.reason}", actor=req.principal))
                elif s.status is StepStatus.already:
                    result.steps.append(UndoneStep(
                        step_id=s.step.step_id, action=s.step.action.value,
                        outcome="nothing_to_undo", detail="was already in the target state"))
            self.state = ContainmentState.rolled_back
            self._audit(AuditType.rollback, None, actor=req.principal, reason=req.reason,
                        data={"steps": [u.model_dump() for u in result.steps]})
            self._set_sa()
            for _ in requests:
                self.rollback_seq += 1
                self.rollback_results[self.rollback_seq] = result

    async def _resolve(self, req: ResolveInput) -> None:
        if req.verdict is ResolveVerdict.false_positive:
            self.rollback_requests.append(RollbackInput(principal=req.principal,
                                                        reason=f"false positive: {req.reason}"))
            await self._rollback_all()
        else:
            for s in self.steps:
                if s.status is StepStatus.applied and s.revert_at is not None:
                    s.revert_at = None
                    s.confirmed_by = req.principal
                if s.status in (StepStatus.queued, StepStatus.awaiting_approval,
                                StepStatus.approved):
                    s.status = StepStatus.cancelled
        self.state = ContainmentState.resolved
        self._audit(AuditType.resolved, None, actor=req.principal, reason=req.reason,
                    data={"verdict": req.verdict.value})

    # ------------------------------------------------------------------ updates
    @workflow.update
    async def add_alert(self, inp: NewAlertInput) -> NewAlertResult:
        self.updates_this_run += 1
        alert = inp.alert
        if alert.id in self._seen_set:
            return NewAlertResult(workflow_id=self._wid, alert_id=alert.id, deduplicated=True)
        self._remember(alert.id)
        self.alerts_seen += 1
        if self.first_alert_received_at is None:
            self.first_alert_received_at = alert.received_at
        if alert.category.value not in self.categories:
            self.categories.append(alert.category.value)
        self.identity = inp.identity
        for pb in inp.playbooks:
            self.playbooks = [p for p in self.playbooks if p.name != pb.name] + [pb]
        # Declared losses gate approval and steps are identified by their target; histories
        # recorded before that replay with the old planning.
        result = plan(alert, self.identity, self.playbooks, self._plan_state(),
                      declared=_patched(DECLARED_PLAN))
        queued: list[str] = []
        rank = alert.severity.rank
        skipped: dict[str, str] = {}
        for step in result.steps:
            existing = self._find(step.step_id)
            if step.skipped is not None and _patched(PLAN_SKIPS):
                skipped[step.step_id] = step.skipped
                if existing is None:
                    held = StepState(
                        step=step, action_id=f"act-{workflow.uuid4().hex[:24]}",
                        alert_ids=[alert.id], requested_by=inp.requested_by,
                        reason=inp.reason or alert.title, ticket=inp.ticket,
                        severity_rank=rank, queued_at=workflow.now(), note=step.skipped,
                        status=StepStatus.refused if step.refused else StepStatus.skipped)
                    self.steps.append(held)
                    if step.refused:  # the playbook asks what the provider cannot do
                        self._notify(held, "step_refused", self._escalation_targets(held),
                                     actions=False)
                elif alert.id not in existing.alert_ids:
                    existing.alert_ids.append(alert.id)
                continue
            if existing is not None and (existing.status in ACTIVE or existing.status in DONE):
                if alert.id not in existing.alert_ids:
                    existing.alert_ids.append(alert.id)
                continue
            if existing is not None and rank <= existing.severity_rank:
                # Denied, timed out, failed or reverted already: only worse evidence asks again.
                continue
            self.steps.append(StepState(
                step=step, action_id=f"act-{workflow.uuid4().hex[:24]}", alert_ids=[alert.id],
                requested_by=inp.requested_by, reason=inp.reason or alert.title,
                ticket=inp.ticket, break_glass=inp.break_glass, severity_rank=rank,
                queued_at=workflow.now(),
            ))
            queued.append(step.step_id)
        self.max_severity_rank = max(self.max_severity_rank, rank)
        if self.state in (ContainmentState.rolled_back,) and queued:
            self.state = ContainmentState.active
        self.last_activity = workflow.now()
        if not _patched(PLAN_AUDITED_BY_DISPATCHER):
            # Histories from before the dispatcher recorded plan.chosen itself (one
            # activity less per alert) still replay.
            self._audit(AuditType.plan_chosen, None, actor="stanch", alert_ids=[alert.id],
                        reason=result.reason, data={
                            "playbook": result.playbook, "queued": queued,
                            "planned": [s.step_id for s in result.steps],
                            "category": alert.category.value,
                            "severity": alert.severity.value})
        self._set_sa()
        return NewAlertResult(workflow_id=self._wid, alert_id=alert.id, deduplicated=False,
                              playbook=result.playbook, queued=queued, plan_reason=result.reason,
                              planned=[s.step_id for s in result.steps if s.skipped is None],
                              loses={s.step_id: s.loses for s in result.steps
                                     if s.loses and s.skipped is None},
                              skipped=skipped)

    @add_alert.validator
    def _validate_add_alert(self, inp: NewAlertInput) -> None:
        if self.closed or self.resolve_request is not None:
            raise ApplicationError("containment is resolved; a new alert starts a new one",
                                   type="Closed")
        if inp.identity.ref != self.identity.ref:
            raise ApplicationError("alert is for a different identity", type="WrongIdentity")

    @workflow.update
    async def decide(self, inp: DecisionInput) -> DecisionResult:
        self.updates_this_run += 1
        s = self._find(inp.step_id)
        assert s is not None and s.approval is not None  # guaranteed by the validator
        outcome = approvals.record(s.approval, Vote(
            principal=inp.principal.id, verdict=inp.verdict, comment=inp.comment,
            at=workflow.now(), channel=inp.channel))
        if outcome is ApprovalOutcome.approved:
            s.status = StepStatus.approved
        elif outcome is ApprovalOutcome.denied:
            s.status = StepStatus.denied
        self._audit(AuditType.decision_recorded, s, actor=inp.principal.id, reason=inp.comment,
                    data={"verdict": inp.verdict.value, "channel": inp.channel,
                          "outcome": outcome.value, "approvals": s.approval.approvals,
                          "denials": s.approval.denials, "groups": inp.principal.groups})
        self.last_activity = workflow.now()
        self._set_sa()
        return DecisionResult(step_id=inp.step_id, status=s.status,
                              approvals=s.approval.approvals, denials=s.approval.denials,
                              quorum=s.approval.policy.quorum,
                              deny_quorum=s.approval.policy.deny_quorum)

    @decide.validator
    def _validate_decide(self, inp: DecisionInput) -> None:
        s = self._find(inp.step_id)
        if s is None:
            raise ApplicationError(f"unknown step {inp.step_id!r}", type="UnknownStep")
        reason = approvals.refusal(
            s.approval if s.status is StepStatus.awaiting_approval else None,
            inp.principal, inp.verdict)
        if reason is not None:
            raise ApplicationError(reason, type="DecisionRefused")

    @workflow.update
    async def rollback(self, inp: RollbackInput) -> RollbackResult:
        self.updates_this_run += 1
        self.rollback_requests.append(inp)
        target = self.rollback_seq + len(self.rollback_requests)
        await workflow.wait_condition(lambda: target in self.rollback_results)
        return self.rollback_results[target]

    @rollback.validator
    def _validate_rollback(self, inp: RollbackInput) -> None:
        if not inp.reason.strip():
            raise ApplicationError("a reason is required", type="ReasonRequired")
        self._refuse_subject(inp.caller, inp.principal, "roll back")
        if self.closed or self.resolve_request is not None:
            raise ApplicationError("containment is resolved", type="Closed")

    @workflow.update
    async def resolve(self, inp: ResolveInput) -> ContainmentStatus:
        self.updates_this_run += 1
        self.resolve_request = inp
        await workflow.wait_condition(lambda: self.state is ContainmentState.resolved)
        return self.status()

    @resolve.validator
    def _validate_resolve(self, inp: ResolveInput) -> None:
        self._refuse_subject(inp.caller, inp.principal, "resolve")
        if self.closed or self.resolve_request is not None:
            raise ApplicationError("containment is already resolved", type="Closed")

    @workflow.update
    async def confirm(self, inp: ConfirmInput) -> StepView:
        self.updates_this_run += 1
        s = self._find(inp.step_id)
        assert s is not None
        s.revert_at = None
        s.confirmed_by = inp.principal
        self._audit(AuditType.confirmed, s, actor=inp.principal, reason=inp.reason)
        return self._view(s)

    @confirm.validator
    def _validate_confirm(self, inp: ConfirmInput) -> None:
        self._refuse_subject(inp.caller, inp.principal, "confirm a step of")
        s = self._find(inp.step_id)
        if s is None:
            raise ApplicationError(f"unknown step {inp.step_id!r}", type="UnknownStep")
        if s.status is not StepStatus.applied or s.revert_at is None:
            raise ApplicationError("nothing to confirm: the step has no pending revert",
                                   type="NotPending")

    @workflow.update
    async def acknowledge_review(self, inp: AckInput) -> Review:
        self.updates_this_run += 1
        review = next(r for r in self.reviews if r.review_id == inp.review_id)
        review.acknowledged_by = inp.principal
        review.acknowledged_at = workflow.now()
        self._audit(AuditType.review_acknowledged, None, actor=inp.principal,
                    reason=inp.comment, data={"review_id": inp.review_id,
                                              "step_id": review.step_id})
        return review

    @acknowledge_review.validator
    def _validate_ack(self, inp: AckInput) -> None:
        self._refuse_subject(inp.caller, inp.principal, "acknowledge a review of")
        review = next((r for r in self.reviews if r.review_id == inp.review_id), None)
        if review is None:
            raise ApplicationError(f"unknown review {inp.review_id!r}", type="UnknownReview")
        if review.acknowledged_by is not None:
            raise ApplicationError("review already acknowledged", type="NotPending")
        if review.requested_by is not None and review.requested_by == inp.principal:
            raise ApplicationError("the person who broke glass cannot acknowledge their own "
                                   "review", type="DecisionRefused")

    @workflow.query
    def status(self) -> ContainmentStatus:
        applied = [s for s in self.steps if s.status in DONE and s.result is not None]
        rung = max((s.step.action.rung for s in applied), default=0)
        top = max(applied, key=lambda s: s.step.action.rung) if applied else None
        level = top.step.action.value if top is not None else None
        pending = []
        for s in self.steps:
            if s.status is StepStatus.awaiting_approval and s.approval is not None:
                pending.append({
                    "step_id": s.step.step_id, "action": s.step.action.value,
                    "groups": s.approval.groups, "quorum": s.approval.policy.quorum,
                    "approvals": s.approval.approvals, "denials": s.approval.denials,
                    "requested_at": s.approval.requested_at.isoformat(),
                    "deadline": s.approval.deadline.isoformat(),
                })
        return ContainmentStatus(
            workflow_id=self._wid, identity=self.identity, state=self._overall_state(),
            rung=rung, level=level, steps=[self._view(s) for s in self.steps],
            pending_approvals=pending,
            applied=[{"step_id": s.step.step_id, "action": s.step.action.value,
                      "action_id": s.action_id, "status": s.status.value,
                      "before": s.result.before if s.result else {},
                      "undo": s.result.undo.model_dump(mode="json")
                      if s.result and s.result.undo else None,
                      "irreversible": bool(s.result and s.result.irreversible),
                      "loses": s.step.loses}
                     for s in applied],
            reviews=self.reviews, alerts_seen=self.alerts_seen,
            audit={s.step.step_id: s.action_id for s in self.steps},
        )

    # ------------------------------------------------------------------ helpers
    @property
    def _wid(self) -> str:
        return workflow.info().workflow_id

    def _overall_state(self) -> ContainmentState:
        if self.state in (ContainmentState.resolved, ContainmentState.rolled_back):
            return self.state
        if any(s.status is StepStatus.awaiting_approval for s in self.steps):
            return ContainmentState.awaiting_approval
        if any(s.status in (StepStatus.queued, StepStatus.approved, StepStatus.applying)
               for s in self.steps):
            return ContainmentState.active
        if any(s.status in (StepStatus.failed, StepStatus.refused) for s in self.steps):
            return ContainmentState.failed
        return ContainmentState.contained

    def _find(self, step_id: str) -> StepState | None:
        for s in reversed(self.steps):
            if s.step.step_id == step_id:
                return s
        return None

    def _remember(self, alert_id: str) -> None:
        self.seen.append(alert_id)
        self._seen_set.add(alert_id)
        if len(self.seen) > SEEN_ALERTS_KEPT:
            dropped = self.seen.pop(0)
            self._seen_set.discard(dropped)

    def _plan_state(self) -> PlanState:
        done = [s for s in self.steps if s.status in ACTIVE or s.status in DONE]
        return PlanState(
            applied_step_ids=[s.step.step_id for s in done],
            applied_actions=[s.step.action for s in done],
            rung=max((s.step.action.rung for s in done if s.status in DONE), default=0),
            alerts_seen=self.alerts_seen,
            categories_seen=[Category(c) for c in self.categories],
        )

    def _view(self, s: StepState) -> StepView:
        appr = None
        if s.approval is not None:
            appr = s.approval.model_dump(mode="json", exclude={"members"})
        return StepView(
            step_id=s.step.step_id, action=s.step.action.value, status=s.status,
            playbook=s.step.playbook, alert_ids=s.alert_ids, approval=appr,
            params=s.step.params, description=s.step.description,
            result=s.result.model_dump(mode="json") if s.result else None,
            undo=s.result.undo.model_dump(mode="json") if s.result and s.result.undo else None,
            irreversible=bool(s.result.irreversible) if s.result else s.step.irreversible,
            revert_at=s.revert_at, error=s.error, note=s.note, changes=s.step.changes,
            undo_restores=s.step.undo_restores, loses=s.step.loses, loss_gate=s.step.loss_gate,
        )

    def _refuse_subject(self, caller: Principal | None, principal: str, what: str) -> None:
        """Validators only (never replayed): the contained identity, under any alias, and
        for a person its owner principal, may not undo or settle its own containment."""
        who = caller or Principal(id=principal)
        if approvals.is_subject(who, self.identity.ref.key, self._subject_names()):
            raise ApplicationError(
                f"refused: {who.id} is the identity under containment (or its owner) and "
                f"cannot {what} its own containment; ask another responder",
                type="SubjectRefused")

    def _subject_names(self) -> list[str]:
        names = [self.identity.ref.id, *self.identity.aliases]
        if self.identity.ref.kind in HUMAN_KINDS and self.identity.owner:
            names.append(self.identity.owner)  # a person's owner is the person
        return names

    def _escalation_targets(self, s: StepState) -> list[str]:
        if s.step.approval is not None:
            return list(s.step.approval.groups)
        return [f"user:{self.identity.owner}"] if self.identity.owner else ["soc-approvers"]

    def _audit(self, type_: AuditType, s: StepState | None, *, actor: str = "stanch",
               reason: str | None = None, alert_ids: list[str] | None = None,
               data: dict[str, Any] | None = None) -> None:
        """Fire-and-collect an audit activity; it must not delay the containment itself."""
        event = self._audit_event(type_, s, actor=actor, reason=reason, alert_ids=alert_ids,
                                  data=data)
        self.tasks.append(asyncio.create_task(_quick("record_audit", event, result_type=int)))
        self._prune_tasks()

    def _audit_event(self, type_: AuditType, s: StepState | None, *, actor: str = "stanch",
                     reason: str | None = None, alert_ids: list[str] | None = None,
                     data: dict[str, Any] | None = None) -> AuditEvent:
        d = dict(data or {})
        if s is not None:
            d.setdefault("step_id", s.step.step_id)
            d.setdefault("action", s.step.action.value)
        return AuditEvent(
            type=type_, at=workflow.now(), actor=actor, subject=self.identity.ref.key,
            workflow_id=self._wid, alert_ids=alert_ids or (s.alert_ids if s else []),
            action_id=s.action_id if s else None, reason=reason, ticket=s.ticket if s else None,
            data=d, dedup_key=f"{self._wid}:{workflow.uuid4().hex}",
        )

    def _notify(self, s: StepState, kind: str, targets: list[str], *, actions: bool) -> None:
        if not self.notifications:
            workflow.logger.info("containment.notify_skipped_no_channels",
                                 extra={"wf": self._wid, "kind": kind})
            return
        req = NotifyRequest(
            notification_id=f"{s.action_id}:{kind}:{workflow.uuid4().hex[:8]}", kind=kind,
            targets=targets, workflow_id=self._wid, step_id=s.step.step_id,
            subject=self.identity.ref.key,
            title=f"{kind.replace('_', ' ')}: {s.step.action.value} on "
                  f"{self.identity.display_name or self.identity.ref.id}",
            text=s.reason, fields={"playbook": s.step.playbook, "step": s.step.step_id,
                                   "status": s.status.value},
            actions=actions,
            deadline=s.approval.deadline if s.approval is not None else None,
        )
        self.tasks.append(asyncio.create_task(workflow.execute_activity(
            "notify", req, start_to_close_timeout=QUICK,
            schedule_to_close_timeout=timedelta(minutes=10), retry_policy=QUICK_RETRY)))
        self._prune_tasks()

    def _prune_tasks(self) -> None:
        self.tasks = [t for t in self.tasks if not t.done()]

    async def _drain_tasks(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.tasks = []

    def _set_sa(self) -> None:
        if not self.use_sa:
            return
        applied = [s.step.action.rung for s in self.steps if s.status in DONE]
        current = workflow.info().typed_search_attributes
        # Only what changed: each upsert is a history event and a visibility write, and a
        # storm of alerts that change nothing must not cost one each.
        kind, rung = self.identity.ref.kind.value, max(applied, default=0)
        status = self._overall_state().value
        updates: list[Any] = []
        if current.get(SA_KIND) != kind:
            updates.append(SA_KIND.value_set(kind))
        if current.get(SA_RUNG) != rung:
            updates.append(SA_RUNG.value_set(rung))
        if current.get(SA_STATUS) != status:
            updates.append(SA_STATUS.value_set(status))
        if updates:
            workflow.upsert_search_attributes(updates)

    def _carry(self, inp: ContainmentInput) -> ContainmentInput:
        return ContainmentInput(
            identity=self.identity, search_attributes=self.use_sa,
            idle_close_after=self.idle_close_after, max_updates_per_run=self.max_updates,
            notifications=self.notifications,
            carried=CarriedState(
                steps=self.steps, seen_alert_ids=self.seen, alerts_seen=self.alerts_seen,
                categories_seen=self.categories, max_severity_rank=self.max_severity_rank,
                reviews=self.reviews, state=self.state, playbooks=self.playbooks,
                started_at=self.started_at,
                first_alert_received_at=self.first_alert_received_at,
            ),
        )


LOCAL_QUICK = "quick-steps-local"
DECLARED_PLAN = "plan-declared-losses-per-target"
# Steps the identity's provider cannot run are kept as skipped/refused, never run.
PLAN_SKIPS = "plan-skips-unsupported"
PLAN_AUDITED_BY_DISPATCHER = "plan-audited-by-dispatcher"
# Parking on approval: the approver snapshot and the approval.requested record in one local
# activity (one marker, one round trip), not two.
APPROVAL_IN_ONE_STEP = "approval-request-one-local-activity"
# Every patch above, in one marker. Each patch a run takes records a marker and, from the
# SDK's core, an upsert of the TemporalChangeVersion search attribute (a history event and
# a visibility write on the server): a new containment took two of each before its first
# IdP write, three when it parked. A run that records CURRENT takes every path in FOLDED
# with that one marker; histories recorded before it carry the individual markers and
# replay through them (tests/workflows/histories/*-patches-v2.json).
CURRENT = "containment-patches-2026-12"
FOLDED = frozenset({LOCAL_QUICK, DECLARED_PLAN, PLAN_SKIPS, PLAN_AUDITED_BY_DISPATCHER,
                    APPROVAL_IN_ONE_STEP})
# FOLDED never grows: runs recorded with CURRENT did not take a later change, so a later
# change checks its own `workflow.patched(...)`. Folding it in too takes a new marker id,
# checked first, with this one kept for the runs that recorded it.


def _patched(patch_id: str) -> bool:
    """``workflow.patched(patch_id)``, or true without a marker of its own when the run has
    taken CURRENT. The SDK memoizes both per run, so whichever the run decided first (live
    or in replay) holds for the rest of it."""
    assert patch_id in FOLDED, f"{patch_id} is not folded into {CURRENT}"
    return workflow.patched(CURRENT) or workflow.patched(patch_id)


def _quick(name: str, arg: Any, *, result_type: type[Any]) -> Any:
    """A short, local step (an audit append, the approver snapshot) as a local activity:
    it runs in the worker that runs the workflow task, inside that task, so it costs no
    round trip through Temporal and no activity events in history (one marker instead).
    Histories from before the change (regular activities) replay through the patch."""
    if _patched(LOCAL_QUICK):
        return workflow.execute_local_activity(
            name, arg, result_type=result_type, start_to_close_timeout=QUICK,
            schedule_to_close_timeout=QUICK_BUDGET, retry_policy=QUICK_RETRY)
    return workflow.execute_activity(name, arg, result_type=result_type,
                                     start_to_close_timeout=QUICK, retry_policy=QUICK_RETRY)


def _cause(err: BaseException) -> str:
    cur: BaseException | None = err
    while cur is not None and cur.__cause__ is not None:
        cur = cur.__cause__
    return str(cur or err)
