"""Types shared by every part of Stanch.

These models cross process boundaries (HTTP, Temporal payloads, the audit store), so they
are plain pydantic v2 models with no behaviour that does I/O. Workflow code imports them
through ``workflow.unsafe.imports_passed_through()``.

Clock rule: no field here defaults to the wall clock. Callers pass the time (``workflow.now()``
inside a workflow, ``datetime.now(UTC)`` elsewhere), because a ``default_factory`` clock would
silently break determinism inside a workflow.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, use_enum_values=False)


# --------------------------------------------------------------------------- identities


class IdentityKind(StrEnum):
    user = "user"
    service_account = "service_account"
    access_key = "access_key"
    service_principal = "service_principal"
    oauth_app = "oauth_app"
    token = "token"


HUMAN_KINDS = frozenset({IdentityKind.user})


class IdentityRef(_Model):
    """One identity on one provider. ``id`` is the provider's own opaque id."""

    provider: str = Field(description="Provider name as configured, e.g. `mock`, `aws_iam`.")
    id: str = Field(description="The provider's opaque id for the identity.")
    kind: IdentityKind = Field(description="What sort of identity this is.")

    @property
    def key(self) -> str:
        """Stable plain-text key, ``provider:id``; used inside Stanch, never as a workflow id."""
        return f"{self.provider}:{self.id}"

    def workflow_id(self) -> str:
        """Opaque workflow id: a hash, so no email or UPN ever reaches Temporal's visibility."""
        return containment_workflow_id(self.provider, self.id)


def containment_workflow_id(provider: str, identity_id: str) -> str:
    digest = hashlib.sha256(f"{provider}\x00{identity_id}".encode()).hexdigest()[:24]
    return f"containment-{digest}"


# --------------------------------------------------------------------------- alerts


class Level(StrEnum):
    """One scale for severity and confidence across every source."""

    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]

    @classmethod
    def from_score(cls, score: float, top: float = 100.0) -> Level:
        """Map a 0..top numeric score onto the scale (0-19 info … 90+ critical)."""
        pct = 0.0 if top <= 0 else max(0.0, min(100.0, 100.0 * float(score) / top))
        if pct >= 90:
            return cls.critical
        if pct >= 70:
            return cls.high
        if pct >= 40:
            return cls.medium
        if pct >= 20:
            return cls.low
        return cls.info


_LEVEL_RANK = {Level.info: 0, Level.low: 1, Level.medium: 2, Level.high: 3, Level.critical: 4}


class Category(StrEnum):
    risky_sign_in = "risky_sign_in"
    leaked_secret = "leaked_secret"
    anomalous_api_use = "anomalous_api_use"
    privilege_escalation = "privilege_escalation"
    oauth_app_abuse = "oauth_app_abuse"
    dormant_identity_active = "dormant_identity_active"
    malware_on_host = "malware_on_host"
    manual = "manual"
    other = "other"


class NameType(StrEnum):
    """What sort of name a source used for an identity (drives inventory resolution)."""

    upn = "upn"
    email = "email"
    username = "username"
    domain_user = "domain_user"  # DOMAIN\\user
    aad_object_id = "aad_object_id"
    sid = "sid"
    access_key_id = "access_key_id"
    app_id = "app_id"
    arn = "arn"
    provider_id = "provider_id"  # already `provider:id`
    token = "token"  # a token fingerprint / type (never the secret)
    other = "other"


class IdentityMention(_Model):
    """An identity as the source named it, before resolution against the inventory."""

    name: str = Field(description="The name exactly as the source sent it.")
    name_type: NameType = Field(description="What sort of name it is.")
    kind: IdentityKind | None = Field(default=None, description="Kind, when the source says.")
    role: str | None = Field(default=None, description="Role in the alert, e.g. actor, target.")


class Alert(_Model):
    """A normalized alert. ``id`` is derived from source + dedup key, so retries collide."""

    id: str = Field(description="Stanch's alert id: a hash of source and dedup key.")
    source: str = Field(description="Source name, e.g. `splunk`, `generic`, `manual`.")
    source_alert_id: str = Field(description="The source's own alert id.")
    dedup_key: str = Field(description="Stable key: the same alert redelivered has the same key.")
    title: str = ""
    description: str = ""
    category: Category = Category.other
    severity: Level = Level.medium
    confidence: Level = Level.medium
    mentions: list[IdentityMention] = Field(default_factory=list)
    grants: list[str] = Field(
        default_factory=list,
        description="Privileges the alert names as newly granted (group, role or policy "
        "names); `reduce_scope` with `only_new_grants` removes just these.",
    )
    observed_at: datetime | None = None
    received_at: datetime
    raw: dict[str, Any] = Field(default_factory=dict, description="The payload as received.")

    @staticmethod
    def make_id(source: str, dedup_key: str) -> str:
        return "alert-" + hashlib.sha256(f"{source}\x00{dedup_key}".encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- actions


class Action(StrEnum):
    """Ladder rungs, mildest first, plus `notify` which changes nothing."""

    notify = "notify"
    reduce_scope = "reduce_scope"
    force_reauth = "force_reauth"
    rotate = "rotate"
    revoke = "revoke"

    @property
    def rung(self) -> int:
        return _RUNG[self]


_RUNG = {
    Action.notify: 0,
    Action.reduce_scope: 1,
    Action.force_reauth: 2,
    Action.rotate: 3,
    Action.revoke: 4,
}

CONTAINMENT_ACTIONS = (Action.reduce_scope, Action.force_reauth, Action.rotate, Action.revoke)


class ActionStatus(StrEnum):
    applied = "applied"  # the provider changed
    already = "already"  # it was already in the target state: success, nothing changed
    undone = "undone"
    failed = "failed"


class UndoSpec(_Model):
    """How to reverse an applied action, from its captured before-state."""

    action: Action
    params: dict[str, Any] = Field(default_factory=dict)
    description: str = ""


class ActionRequest(_Model):
    """Input of the provider action activity."""

    action_id: str = Field(description="Idempotency key derived from the workflow, not the run.")
    workflow_id: str
    identity: IdentityRef
    action: Action
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    actor: str = "stanch"
    alert_ids: list[str] = Field(default_factory=list)
    ticket: str | None = None
    subject: dict[str, Any] | None = Field(
        default=None, description="How Shared Signals names the identity (RFC 9493 sub_id), "
        "as the containment knew it when it acted; recorded with the result, so announcing "
        "the action needs no inventory.")


class ActionResult(_Model):
    """What an action did, with the state it changed so it can be undone."""

    action_id: str
    action: Action
    identity: IdentityRef
    status: ActionStatus
    changed: bool = Field(description="True when the provider's state changed.")
    before: dict[str, Any] = Field(default_factory=dict, description="Captured before-state.")
    after: dict[str, Any] = Field(default_factory=dict, description="Verified after-state.")
    undo: UndoSpec | None = Field(default=None, description="None when irreversible.")
    irreversible: bool = False
    provider_ref: str | None = Field(default=None, description="Provider correlation id.")
    message: str = ""


class UndoRequest(_Model):
    """Input of the undo activity: the original result carries before-state and undo spec."""

    action_id: str
    workflow_id: str
    original: ActionResult
    reason: str = ""
    actor: str = "stanch"


# --------------------------------------------------------------------------- audit


class AuditType(StrEnum):
    alert_received = "alert.received"
    alert_refused = "alert.refused"
    alert_dead_letter = "alert.dead_letter"
    identity_unresolved = "identity.unresolved"
    plan_chosen = "plan.chosen"
    approval_requested = "approval.requested"
    approval_escalated = "approval.escalated"
    decision_recorded = "decision.recorded"
    decision_refused = "decision.refused"
    access_refused = "access.refused"
    approval_timeout = "approval.timeout"
    action_intent = "action.intent"
    action_result = "action.result"
    action_failed = "action.failed"
    revert = "action.reverted"
    rollback = "containment.rollback"
    resolved = "containment.resolved"
    confirmed = "containment.confirmed"
    manual_containment = "containment.manual"
    break_glass = "break_glass"
    review_opened = "review.opened"
    review_acknowledged = "review.acknowledged"
    elevation_requested = "elevation.requested"
    elevation_granted = "elevation.granted"
    elevation_extended = "elevation.extended"
    elevation_revoked = "elevation.revoked"
    elevation_review = "elevation.review"
    notification_sent = "notification.sent"
    checkpoint = "audit.checkpoint"
    ssf_event = "ssf.event"  # a SET received that is not an alert (verification, …)
    ssf_stream = "ssf.stream"  # a stream created, changed, verified or removed
    ssf_set_queued = "ssf.set_queued"  # Stanch queued a SET for a receiver


class AuditEvent(_Model):
    """One thing that happened, before it is chained into the store."""

    type: AuditType
    at: datetime = Field(description="When it happened; always passed in, never defaulted.")
    actor: str = Field(description="Who or what did it: a principal, `stanch`, a source.")
    subject: str | None = Field(default=None, description="Identity key `provider:id`.")
    workflow_id: str | None = None
    alert_ids: list[str] = Field(default_factory=list)
    action_id: str | None = None
    phase: str | None = Field(default=None, description="intent | result, for action records.")
    reason: str | None = None
    ticket: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    dedup_key: str | None = Field(
        default=None,
        description="When set, the store keeps at most one record with this key.",
    )


class AuditRecord(AuditEvent):
    """An event as stored: chained by sequence number and hashes."""

    seq: int
    prev_hash: str
    hash: str


# --------------------------------------------------------------------------- plans


class TimeoutPolicy(StrEnum):
    deny = "deny"
    approve = "approve"
    escalate = "escalate"


class EscalationStage(_Model):
    after: timedelta = Field(description="How long after the request this stage starts.")
    groups: list[str] = Field(description="Groups that may also decide from then on.")
    notify: list[str] = Field(default_factory=list, description="Extra notification targets.")


class ApprovalPolicy(_Model):
    groups: list[str] = Field(description="Approver groups; members may decide.")
    quorum: int = Field(default=1, ge=1, description="Distinct approvals needed to proceed.")
    deny_quorum: int = Field(default=1, ge=1, description="Distinct denials that stop the step.")
    deadline: timedelta = Field(default=timedelta(minutes=30))
    escalation: list[EscalationStage] = Field(default_factory=list)
    on_timeout: TimeoutPolicy = TimeoutPolicy.deny
    owner_must_approve: bool = Field(
        default=False, description="The identity's inventory owner is one of the approvers needed."
    )


class PlannedStep(_Model):
    """One rung of a planned ladder, fully resolved: what runs is exactly this."""

    step_id: str = Field(description="Stable id: playbook, index and action.")
    playbook: str
    index: int
    action: Action
    params: dict[str, Any] = Field(default_factory=dict)
    approval: ApprovalPolicy | None = None
    revert_after: timedelta | None = None
    irreversible: bool = False
    break_glass: bool = False
    break_glass_reason: str | None = None
    notify: list[str] = Field(default_factory=list)
    description: str = ""
    target: list[str] = Field(
        default_factory=list, description="What the step acts on (the grants or credentials "
        "an alert named); part of the step id, so a new target is a new step.")
    changes: list[str] = Field(
        default_factory=list, description="Declared before it runs: what the action changes "
        "on the identity's provider (stanch.capabilities).")
    undo_restores: list[str] = Field(
        default_factory=list, description="What undo puts back as it was.")
    loses: list[str] = Field(
        default_factory=list, description="Loss ids (stanch.capabilities.LOSSES): what "
        "neither the action nor its undo brings back.")
    loss_gate: str = Field(
        default="", description="Why the step waits for a human because of what it loses; "
        "empty when it does not.")
    skipped: str | None = Field(
        default=None, description="Set when the step will not run on this identity's "
        "provider: why (the action or a parameter is not supported there).")
    refused: bool = Field(
        default=False, description="With `skipped`: the step as written cannot be honoured "
        "(a parameter the provider cannot do), so a human must decide; not a mere skip.")


class Plan(_Model):
    playbook: str | None = Field(description="Matched playbook, or None when nothing matched.")
    steps: list[PlannedStep] = Field(default_factory=list)
    reason: str = ""


# --------------------------------------------------------------------------- principals


class Role(StrEnum):
    viewer = "viewer"
    responder = "responder"
    approver = "approver"
    admin = "admin"


class Principal(_Model):
    """A verified caller: the API authenticates, the workflow trusts only this."""

    id: str
    groups: list[str] = Field(default_factory=list)
    roles: list[Role] = Field(default_factory=list)
    identity_keys: list[str] = Field(
        default_factory=list,
        description="Identity keys (`provider:id`) this principal is, to refuse self-approval.",
    )


# --------------------------------------------------------------------------- planning inputs


class IdentityContext(_Model):
    """What the inventory knows of an identity; the planner conditions on it."""

    ref: IdentityRef
    display_name: str = ""
    owner: str | None = Field(default=None, description="Accountable person (principal id).")
    custodian: str | None = Field(default=None, description="Who operates it day to day.")
    purpose: str = ""
    environment: str | None = Field(default=None, description="e.g. prod, staging, dev.")
    criticality: Level | None = None
    aliases: list[str] = Field(default_factory=list, description="UPN, access key id, app id …")
    attributes: dict[str, str] = Field(default_factory=dict)
    last_rotated: datetime | None = None
    expires: datetime | None = None
    in_inventory: bool = Field(default=True, description="False when resolved without inventory.")
    provider_type: str | None = Field(
        default=None, description="Adapter type of `ref.provider` (mock, aws_iam, ldap …), "
        "from the configuration: the planner reads its declarations.")


class PlanState(_Model):
    """What a containment has done so far, as the planner needs it."""

    applied_step_ids: list[str] = Field(default_factory=list)
    applied_actions: list[Action] = Field(default_factory=list)
    rung: int = Field(default=0, description="Highest rung applied (Action.rung).")
    alerts_seen: int = 0
    categories_seen: list[Category] = Field(default_factory=list)


# --------------------------------------------------------------------------- notifications


class NotifyRequest(_Model):
    """Input of the notify activity: who to tell, about what, with approve/deny buttons?"""

    notification_id: str = Field(description="Idempotency key: the same id is sent once.")
    kind: str = Field(description="approval_requested, escalated, contained, break_glass, "
                      "review_required, elevation_*, …")
    targets: list[str] = Field(default_factory=list, description="Groups or `user:<id>`.")
    workflow_id: str
    step_id: str | None = None
    subject: str | None = Field(default=None, description="Identity key `provider:id`.")
    title: str
    text: str = ""
    fields: dict[str, str] = Field(default_factory=dict)
    actions: bool = Field(default=False, description="Offer approve/deny buttons.")
    deadline: datetime | None = None


class NotifyResult(_Model):
    notification_id: str
    delivered: list[str] = Field(default_factory=list, description="Channels that accepted it.")
    failed: dict[str, str] = Field(default_factory=dict, description="Channel → reason.")
