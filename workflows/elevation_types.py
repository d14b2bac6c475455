"""Inputs, results and state of ElevationWorkflow and ScopeLeaseWorkflow (STYLE.md: one
type per handler), plus the pure helpers both sides share: workflow ids and policy lookup.
"""

from __future__ import annotations

import fnmatch
import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from stanch.models import ApprovalPolicy, IdentityRef, Principal
from workflows.approvals import ApprovalOutcome, Verdict

# --------------------------------------------------------------------------- ids


def elevation_workflow_id(request_id: str) -> str:
    """Opaque: the request id is random, so nothing about the principal leaks."""
    return "elevation-" + hashlib.sha256(request_id.encode()).hexdigest()[:24]


def lease_workflow_id(principal_key: str, scope: str, namespace: str = "") -> str:
    """One ledger per (principal, scope): a hash, never an email or UPN."""
    raw = f"{namespace}\x00{principal_key}\x00{scope}".encode()
    return "scope-lease-" + hashlib.sha256(raw).hexdigest()[:24]


def lease_id(elevation_wid: str, scope: str) -> str:
    return f"{elevation_wid}:{scope}"


# --------------------------------------------------------------------------- policy


class ScopePolicy(BaseModel):
    """The elevation policy that matched a scope, resolved when the request was made."""

    pattern: str = Field(description="The `elevation_policies` key that matched, or `*`.")
    groups: list[str]
    quorum: int = 1
    max_duration: timedelta
    break_glass_allowed: bool = False
    approval_deadline: timedelta = timedelta(minutes=30)

    def approval(self) -> ApprovalPolicy:
        return ApprovalPolicy(groups=self.groups, quorum=self.quorum,
                              deadline=self.approval_deadline)


def policy_for(provider: str, scope: str, patterns: dict[str, Any], default: Any) -> ScopePolicy:
    """The most specific policy for ``scope``: an exact key, else the longest matching pattern.

    ``patterns`` values and ``default`` are ``stanch.config.ElevationPolicy`` (anything with
    the same fields); a pattern matches the bare scope or ``provider:scope``.
    """
    names = (scope, f"{provider}:{scope}")
    exact = [p for p in patterns if p in names]
    matching = exact or sorted((p for p in patterns
                                if any(fnmatch.fnmatchcase(n, p) for n in names)),
                               key=lambda p: (-len(p), p))
    key = matching[0] if matching else None
    src = patterns[key] if key is not None else default
    return ScopePolicy(pattern=key or "*", groups=list(src.groups), quorum=src.quorum,
                       max_duration=src.max_duration,
                       break_glass_allowed=src.break_glass_allowed,
                       approval_deadline=src.approval_deadline)


# --------------------------------------------------------------------------- elevation


class ElevationState(StrEnum):
    awaiting_approval = "awaiting_approval"
    granting = "granting"
    active = "active"
    revoking = "revoking"
    expired = "expired"  # ran its course; scopes revoked
    revoked = "revoked"  # ended early by a person (or withdrawn before the grant)
    denied = "denied"
    timed_out = "timed_out"  # nobody decided in time
    cancelled = "cancelled"  # the workflow was cancelled; scopes revoked anyway
    failed = "failed"  # the grant failed; whatever was granted was revoked


ENDED = frozenset({ElevationState.expired, ElevationState.revoked, ElevationState.denied,
                   ElevationState.timed_out, ElevationState.cancelled, ElevationState.failed})


class ElevationInput(BaseModel):
    principal: IdentityRef = Field(description="Who gets the scopes: a person or integration.")
    scopes: list[str] = Field(min_length=1, description="Groups/roles/policies on the provider.")
    duration: timedelta
    reason: str
    ticket: str | None = None
    requested_by: str = Field(description="Principal id of the requester.")
    break_glass: bool = False
    policies: dict[str, ScopePolicy] = Field(description="scope → the policy that matched it.")
    ledger_namespace: str = ""


class ScopeLeaseView(BaseModel):
    scope: str
    lease_id: str
    ledger_id: str
    preexisting: bool | None = None
    granted: bool = False
    released: bool = False
    removed: bool = False


class DecisionInput(BaseModel):
    verdict: Verdict
    principal: Principal
    comment: str = ""
    channel: str = "api"


class DecisionResult(BaseModel):
    state: ElevationState
    round: str
    outcome: ApprovalOutcome
    approvals: dict[str, int] = Field(description="policy pattern → approvals so far")
    quorum: dict[str, int]


class ExtendInput(BaseModel):
    principal: Principal
    duration: timedelta
    reason: str


class ExtendResult(BaseModel):
    state: ElevationState
    expires_at: datetime | None
    requested_until: datetime
    capped: bool = Field(description="True when the policy maximum shortened the request.")
    cap_at: datetime | None


class RevokeInput(BaseModel):
    principal: Principal
    reason: str


class ReviewSummary(BaseModel):
    since: datetime
    until: datetime
    actors: list[str]
    count: int
    by_type: dict[str, int] = Field(default_factory=dict)
    records: list[dict[str, Any]] = Field(default_factory=list, description="The first 50.")


class ElevationStatus(BaseModel):
    workflow_id: str
    principal: str
    scopes: list[str]
    state: ElevationState
    requested_by: str
    reason: str
    ticket: str | None
    break_glass: bool
    duration: timedelta
    requested_at: datetime | None
    granted_at: datetime | None
    expires_at: datetime | None
    cap_at: datetime | None
    ended_at: datetime | None
    ended_by: str | None
    end_reason: str | None
    pending: dict[str, Any] | None
    rounds: list[dict[str, Any]]
    leases: list[ScopeLeaseView]
    review: ReviewSummary | None


# --------------------------------------------------------------------------- activities


class LeaseRequest(BaseModel):
    """Input of the acquire/release activities: they update the scope's ledger workflow."""

    principal: IdentityRef
    scope: str
    lease_id: str
    elevation_id: str
    expires_at: datetime | None = None
    actor: str = "stanch"
    reason: str = ""
    namespace: str = ""


class ScopeChangeRequest(BaseModel):
    """Input of the grant/revoke scope activities, run by the ledger."""

    action_id: str
    ledger_id: str
    principal: IdentityRef
    scope: str
    actor: str = "stanch"
    reason: str = ""
    lease_ids: list[str] = Field(default_factory=list)


class GrantResult(BaseModel):
    preexisting: bool = Field(description="The principal held the scope before Stanch.")
    changed: bool
    before_groups: list[str] = Field(default_factory=list)


class RevokeScopeResult(BaseModel):
    removed: bool
    sessions_revoked: list[str] = Field(default_factory=list)


class ReviewRequest(BaseModel):
    elevation_id: str
    principal: IdentityRef
    since: datetime
    until: datetime


# --------------------------------------------------------------------------- ledger


class Lease(BaseModel):
    lease_id: str
    elevation_id: str
    expires_at: datetime | None
    acquired_at: datetime


class LedgerInput(BaseModel):
    principal: IdentityRef
    scope: str
    backstop_grace: timedelta = Field(
        default=timedelta(minutes=5),
        description="A lease its elevation never released ends this long after its expiry.")
    leases: list[Lease] = Field(default_factory=list, description="Carried across runs.")
    preexisting: bool | None = None
    granted: bool = False
    released: list[ReleaseResult] = Field(
        default_factory=list,
        description="Recent releases: a retried release gets the same answer.")


class AcquireInput(BaseModel):
    lease_id: str
    elevation_id: str
    expires_at: datetime | None
    actor: str = "stanch"
    reason: str = ""


class AcquireResult(BaseModel):
    lease_id: str
    preexisting: bool
    granted: bool = Field(description="The scope was added for this lease just now.")
    holders: int


class ReleaseInput(BaseModel):
    lease_id: str
    actor: str = "stanch"
    reason: str = ""


class ReleaseResult(BaseModel):
    lease_id: str
    held: bool = Field(description="False when the lease was unknown or already released.")
    removed: bool = Field(description="The scope was removed from the principal just now.")
    holders: int
    preexisting: bool
    sessions_revoked: list[str] = Field(default_factory=list)


class LedgerStatus(BaseModel):
    principal: str
    scope: str
    leases: list[Lease]
    preexisting: bool | None
    granted: bool
