"""Approval rules shared by containment and elevation: pure, deterministic, no I/O.

An approval request snapshots who may decide when it is made: the approver groups, the
members the principal directory listed for them at that moment, the requester and the
subject. Validators call :func:`refusal` and raise its reason; handlers call :func:`record`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field

from stanch.models import ApprovalPolicy, Principal, TimeoutPolicy

OWNER_PREFIX = "user:"


class Verdict(StrEnum):
    approve = "approve"
    deny = "deny"


class Vote(BaseModel):
    principal: str
    verdict: Verdict
    comment: str = ""
    at: datetime
    channel: str = "api"


class ApprovalOutcome(StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"
    timed_out = "timed_out"
    cancelled = "cancelled"


class ApprovalState(BaseModel):
    """One approval request, as snapshotted when it was made."""

    policy: ApprovalPolicy
    requested_at: datetime
    deadline: datetime
    groups: list[str] = Field(description="Groups allowed to decide now (grows on escalation).")
    members: dict[str, list[str]] = Field(
        default_factory=dict, description="Directory members of each group at request time."
    )
    requester: str | None = None
    subject_key: str | None = None
    subject_names: list[str] = Field(
        default_factory=list,
        description="Lower-cased names the subject goes by (aliases, id; for a person, the "
        "owner principal): none of them may decide on their own containment.",
    )
    owner: str | None = None
    stage: int = Field(default=0, description="Escalation stages reached so far.")
    votes: list[Vote] = Field(default_factory=list)
    outcome: ApprovalOutcome = ApprovalOutcome.pending

    @property
    def approvals(self) -> int:
        return sum(1 for v in self.votes if v.verdict is Verdict.approve)

    @property
    def denials(self) -> int:
        return sum(1 for v in self.votes if v.verdict is Verdict.deny)

    def next_stage_at(self) -> datetime | None:
        if self.outcome is not ApprovalOutcome.pending:
            return None
        stages = self.policy.escalation
        if self.stage < len(stages):
            return self.requested_at + stages[self.stage].after
        return None


def new_request(policy: ApprovalPolicy, *, now: datetime, members: dict[str, list[str]],
                requester: str | None, subject_key: str | None,
                owner: str | None, subject_names: list[str] | None = None) -> ApprovalState:
    return ApprovalState(
        policy=policy, requested_at=now, deadline=now + policy.deadline,
        groups=list(policy.groups), members=members, requester=requester,
        subject_key=subject_key, owner=owner,
        subject_names=sorted({n.lower() for n in subject_names or [] if n}),
    )


def _eligible(state: ApprovalState, principal: Principal) -> bool:
    for group in state.groups:
        if group.startswith(OWNER_PREFIX):
            if principal.id == group[len(OWNER_PREFIX):]:
                return True
            continue
        if group == "owner":
            if state.owner is not None and principal.id == state.owner:
                return True
            continue
        if group in state.members:
            # The directory knew this group when the request was made: only the members
            # it listed then may decide, whatever groups the caller claims today.
            if principal.id in state.members[group]:
                return True
        elif group in principal.groups:
            # Groups the directory does not manage (e.g. from the IdP's JWT claim).
            return True
    return False


def eligible(state: ApprovalState, principal: Principal) -> bool:
    """Whether the principal is among the request's approvers (ignoring votes and outcome)."""
    return _eligible(state, principal)


def is_subject(principal: Principal, subject_key: str, subject_names: list[str]) -> bool:
    """Whether the principal is the subject: by identity key, by id, or under any name the
    subject goes by (aliases; for a person, its owner principal)."""
    names = {n.lower() for n in subject_names}
    return (subject_key in principal.identity_keys
            or subject_key.partition(":")[2] == principal.id
            or principal.id.lower() in names
            or any(k.partition(":")[2].lower() in names for k in principal.identity_keys))


def refusal(state: ApprovalState | None, principal: Principal, verdict: Verdict) -> str | None:
    """Why this principal may not cast this vote now, or None when they may."""
    if state is None or state.outcome is not ApprovalOutcome.pending:
        return "not pending: this step is not waiting for a decision"
    if state.requester is not None and principal.id == state.requester:
        return "self-approval refused: the requester cannot decide their own request"
    if state.subject_key is not None and is_subject(principal, state.subject_key,
                                                     state.subject_names):
        return "refused: the identity under containment cannot decide on itself"
    if any(v.principal == principal.id for v in state.votes):
        return "duplicate vote refused: this principal has already decided on this step"
    if not _eligible(state, principal):
        return (f"not an approver: {principal.id} is not in the step's approver groups "
                f"({', '.join(state.groups)}) as of the request")
    return None


def record(state: ApprovalState, vote: Vote) -> ApprovalOutcome:
    """Add a vote (already validated) and settle the outcome by quorum."""
    state.votes.append(vote)
    policy = state.policy
    if state.denials >= policy.deny_quorum:
        state.outcome = ApprovalOutcome.denied
    elif state.approvals >= policy.quorum and _owner_ok(state):
        state.outcome = ApprovalOutcome.approved
    return state.outcome


def _owner_ok(state: ApprovalState) -> bool:
    if not state.policy.owner_must_approve or state.owner is None:
        return True
    return any(v.principal == state.owner and v.verdict is Verdict.approve for v in state.votes)


def escalate(state: ApprovalState) -> list[str]:
    """Open the next escalation stage; returns the groups it added."""
    stage = state.policy.escalation[state.stage]
    state.stage += 1
    added = [g for g in stage.groups if g not in state.groups]
    state.groups.extend(added)
    return added


def expire(state: ApprovalState) -> ApprovalOutcome:
    """The deadline passed: apply the step's timeout policy (deny unless stated)."""
    if state.policy.on_timeout is TimeoutPolicy.approve:
        state.outcome = ApprovalOutcome.approved
    else:
        state.outcome = ApprovalOutcome.timed_out
    return state.outcome


def extend_deadline(state: ApprovalState, by: timedelta) -> None:
    state.deadline = state.deadline + by
