"""Inputs, results and state of ContainmentWorkflow: one type per handler (STYLE.md)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from stanch.models import (
    ActionResult,
    Alert,
    AuditEvent,
    IdentityContext,
    PlannedStep,
    Principal,
)

# The playbook type lives with the planner; the workflow receives playbooks as data.
from stanch.playbook import Playbook
from workflows.approvals import ApprovalState, Verdict


class StepStatus(StrEnum):
    queued = "queued"
    awaiting_approval = "awaiting_approval"
    approved = "approved"
    applying = "applying"
    applied = "applied"
    already = "already"  # target state already held: nothing changed, nothing to undo
    denied = "denied"
    timed_out = "timed_out"
    failed = "failed"
    reverted = "reverted"  # undone by revert_after or rollback
    cancelled = "cancelled"
    skipped = "skipped"  # the provider lacks the action: planned as skipped, with the reason
    refused = "refused"  # a parameter the provider cannot honour: refused at plan time


ACTIVE = {StepStatus.queued, StepStatus.awaiting_approval, StepStatus.approved,
          StepStatus.applying}
DONE = {StepStatus.applied, StepStatus.already}


class ContainmentState(StrEnum):
    active = "active"
    awaiting_approval = "awaiting_approval"
    contained = "contained"
    failed = "failed"
    rolled_back = "rolled_back"
    resolved = "resolved"


class StepState(BaseModel):
    step: PlannedStep
    status: StepStatus = StepStatus.queued
    action_id: str
    alert_ids: list[str] = Field(default_factory=list)
    requested_by: str | None = None
    reason: str = ""
    ticket: str | None = None
    break_glass: bool = False
    severity_rank: int = 0
    queued_at: datetime
    approval: ApprovalState | None = None
    result: ActionResult | None = None
    applied_at: datetime | None = None
    revert_at: datetime | None = None
    confirmed_by: str | None = None
    undo_result: ActionResult | None = None
    error: str | None = None
    note: str | None = None


class Review(BaseModel):
    review_id: str
    step_id: str
    opened_at: datetime
    requested_by: str | None
    reason: str
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None


class ApprovalRequestInput(BaseModel):
    """The ``request_approval`` local activity: snapshot these approver groups, then append
    the ``approval.requested`` record."""

    groups: list[str]
    event: AuditEvent


class CarriedState(BaseModel):
    """What a continued-as-new run takes with it."""

    steps: list[StepState] = Field(default_factory=list)
    seen_alert_ids: list[str] = Field(default_factory=list)
    alerts_seen: int = 0
    categories_seen: list[str] = Field(default_factory=list)
    max_severity_rank: int = 0
    reviews: list[Review] = Field(default_factory=list)
    state: ContainmentState = ContainmentState.active
    playbooks: list[Playbook] = Field(default_factory=list)
    started_at: datetime | None = None
    first_alert_received_at: datetime | None = None


class ContainmentInput(BaseModel):
    identity: IdentityContext
    search_attributes: bool = Field(
        default=True, description="Upsert Stanch search attributes (registered on the server)."
    )
    idle_close_after: timedelta = Field(default=timedelta(days=30))
    notifications: bool = Field(
        default=True, description="Any notification channel is configured; when none is, "
        "notify steps schedule no activity (nothing could be delivered).")
    max_updates_per_run: int = Field(
        default=1000, ge=1,
        description="Continue-as-new after this many updates (Temporal caps a run near 2000).")
    carried: CarriedState | None = None


class NewAlertInput(BaseModel):
    alert: Alert
    identity: IdentityContext
    playbooks: list[Playbook] = Field(default_factory=list)
    requested_by: str | None = Field(default=None, description="Manual: who asked.")
    reason: str = ""
    ticket: str | None = None
    break_glass: bool = False


class NewAlertResult(BaseModel):
    workflow_id: str
    alert_id: str
    deduplicated: bool
    playbook: str | None = None
    queued: list[str] = Field(default_factory=list)
    planned: list[str] = Field(default_factory=list)
    plan_reason: str = ""
    loses: dict[str, list[str]] = Field(
        default_factory=dict, description="Planned step id → what rollback cannot restore "
        "(declared before it runs), for the steps that lose anything.")
    skipped: dict[str, str] = Field(
        default_factory=dict, description="Step id → why it will not run on this provider.")


class DecisionInput(BaseModel):
    step_id: str
    verdict: Verdict
    principal: Principal
    comment: str = ""
    channel: str = "api"


class DecisionResult(BaseModel):
    step_id: str
    status: StepStatus
    approvals: int
    denials: int
    quorum: int
    deny_quorum: int


class RollbackInput(BaseModel):
    principal: str
    reason: str
    caller: Principal | None = Field(
        default=None, description="The verified caller (its identity keys): the subject may "
        "not act on its own containment.")


class UndoneStep(BaseModel):
    step_id: str
    action: str
    outcome: str  # reverted | irreversible | failed | nothing_to_undo
    detail: str = ""


class RollbackResult(BaseModel):
    steps: list[UndoneStep] = Field(default_factory=list)


class ResolveVerdict(StrEnum):
    true_positive = "true_positive"
    false_positive = "false_positive"


class ResolveInput(BaseModel):
    verdict: ResolveVerdict
    principal: str
    reason: str = ""
    caller: Principal | None = Field(
        default=None, description="The verified caller (its identity keys): the subject may "
        "not act on its own containment.")


class ConfirmInput(BaseModel):
    step_id: str
    principal: str
    reason: str = ""
    caller: Principal | None = Field(
        default=None, description="The verified caller (its identity keys): the subject may "
        "not act on its own containment.")


class AckInput(BaseModel):
    review_id: str
    principal: str
    comment: str = ""
    caller: Principal | None = Field(
        default=None, description="The verified caller (its identity keys): the subject may "
        "not act on its own containment.")


class StepView(BaseModel):
    step_id: str
    action: str
    status: StepStatus
    playbook: str
    alert_ids: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    approval: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    undo: dict[str, Any] | None = None
    irreversible: bool = False
    revert_at: datetime | None = None
    error: str | None = None
    changes: list[str] = Field(default_factory=list, description="Declared: what it changes.")
    undo_restores: list[str] = Field(default_factory=list,
                                     description="Declared: what undo puts back.")
    loses: list[str] = Field(default_factory=list,
                             description="Declared: what rollback cannot restore (loss ids).")
    loss_gate: str = Field(default="", description="Why it waits for a human, when a loss does.")
    note: str | None = Field(default=None, description="Why a step was skipped or refused.")


class ContainmentStatus(BaseModel):
    workflow_id: str
    identity: IdentityContext
    state: ContainmentState
    rung: int
    level: str | None
    steps: list[StepView]
    pending_approvals: list[dict[str, Any]]
    applied: list[dict[str, Any]]
    reviews: list[Review]
    alerts_seen: int
    audit: dict[str, str] = Field(default_factory=dict)
