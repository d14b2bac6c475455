"""What the pages show, assembled from the workflows' own status and the audit trail.

Nothing here decides anything: whether a person may decide is computed with the same pure
rule the workflow's validator uses (:func:`workflows.approvals.refusal`), to choose between
a form and a reason. The validator still has the last word when the form is posted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from stanch.api.auth import has_role
from stanch.config import Settings
from stanch.console.cache import StatusCache
from stanch.models import AuditRecord, AuditType, Principal, Role
from workflows.approvals import ApprovalOutcome, ApprovalState, Verdict, refusal
from workflows.containment_types import ContainmentStatus, StepView

LADDER = ["reduce_scope", "force_reauth", "rotate", "revoke"]
UNDO = {
    "reduce_scope": "restores the captured groups, roles and policies",
    "force_reauth": None,  # sessions are gone; signing in again restores use
    "rotate": "reactivates the old secret until the rotation is finalized",
    "revoke": "re-enables the account and its keys",
    "notify": "nothing to undo: it changes nothing",
}


@dataclass
class InboxItem:
    status: ContainmentStatus
    step: StepView
    approval: ApprovalState
    refusal: str | None
    evidence: list[AuditRecord] = field(default_factory=list)

    @property
    def undo(self) -> str | None:
        return None if self.step.irreversible else UNDO.get(self.step.action)


_PARSED: dict[int, tuple[StepView, ApprovalState]] = {}
_PARSED_KEPT = 5000


def approval_state(step: StepView, settings: Settings) -> ApprovalState:
    """The step's approval request as the validator sees it, with the directory members
    (from the same settings the worker's ``snapshot_approvers`` reads).

    Parsed once per step state: the inbox re-reads the same cached states every second."""
    assert step.approval is not None
    held = _PARSED.get(id(step))
    if held is not None and held[0] is step:
        state = held[1]
    else:
        if len(_PARSED) >= _PARSED_KEPT:
            _PARSED.clear()
        state = ApprovalState.model_validate(step.approval)
        _PARSED[id(step)] = (step, state)
    state.members = directory_members(settings, state.groups)
    return state


def directory_members(settings: Settings, groups: list[str]) -> dict[str, list[str]]:
    return {g: list(m) for g, m in _directory(id(settings), settings).items() if g in groups}


_DIRECTORY: dict[int, tuple[Settings, dict[str, tuple[str, ...]]]] = {}


def _directory(key: int, settings: Settings) -> dict[str, tuple[str, ...]]:
    held = _DIRECTORY.get(key)
    if held is not None and held[0] is settings:
        return held[1]
    members: dict[str, set[str]] = {}
    for pid, p in settings.principals.items():
        for g in p.groups:
            members.setdefault(g, set()).add(pid)
    for tok in settings.api_tokens:
        for g in tok.groups:
            members.setdefault(g, set()).add(tok.principal)
    directory = {g: tuple(sorted(m)) for g, m in members.items()}
    _DIRECTORY[key] = (settings, directory)
    return directory


def why_not(state: ApprovalState, principal: Principal) -> str | None:
    """None when this person may decide now; else the reason, as the validator words it."""
    if not has_role(principal, Role.approver):
        return f"{principal.id} lacks the approver role (viewers and responders see, " \
               "approvers decide)"
    return refusal(state, principal, Verdict.approve)


async def waiting_containments(client: Client, cache: StatusCache) -> list[ContainmentStatus]:
    return await cache.waiting(client)


def inbox(statuses: list[ContainmentStatus], principal: Principal,
          settings: Settings) -> tuple[list[InboxItem], list[InboxItem]]:
    """(steps this person may decide, steps they may not), each oldest first."""
    mine: list[InboxItem] = []
    others: list[InboxItem] = []
    for status in statuses:
        for step in status.steps:
            if step.status.value != "awaiting_approval" or step.approval is None:
                continue
            state = approval_state(step, settings)
            item = InboxItem(status, step, state, why_not(state, principal))
            (others if item.refusal else mine).append(item)
    mine.sort(key=lambda i: i.approval.requested_at)
    others.sort(key=lambda i: i.approval.requested_at)
    return mine, others


async def attach_evidence(items: list[InboxItem], cache: StatusCache) -> None:
    """The alerts behind each step, as received (source, title, severity …)."""
    def load() -> None:
        for item in items:
            for alert_id in item.step.alert_ids[-3:]:
                item.evidence.extend(cache.alert_records(alert_id))
    await asyncio.to_thread(load)


def lost_race(step: StepView | None) -> str | None:
    """"already decided by carol at 12:04" when the step is no longer pending."""
    if step is None or step.approval is None:
        return None
    state = ApprovalState.model_validate(step.approval)
    if state.outcome is ApprovalOutcome.pending:
        return None
    if state.outcome in (ApprovalOutcome.approved, ApprovalOutcome.denied) and state.votes:
        last = state.votes[-1]
        verdict = "approved" if state.outcome is ApprovalOutcome.approved else "denied"
        return (f"already decided by {last.principal} at {last.at:%H:%M} UTC "
                f"({verdict})")
    return f"no longer pending: the request is {state.outcome.value}"


def countdown(deadline: datetime, now: datetime | None = None) -> str:
    left = int((deadline - (now or datetime.now(UTC))).total_seconds())
    if left <= 0:
        return "deadline passed"
    hours, rest = divmod(left, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m left"
    return f"{minutes}m {seconds:02d}s left"


def timeline(records: list[AuditRecord]) -> list[dict[str, Any]]:
    """Audit records of one containment as lines a person reads: what, who, why."""
    out = []
    actions = {r.action_id: r.data["action"] for r in records
               if r.action_id and isinstance(r.data.get("action"), str)}
    for r in records:
        d = r.data
        what = {
            "alert.received": "alert joined", "containment.manual": "contained by hand",
            "plan.chosen": "plan", "approval.requested": "approval requested",
            "approval.escalated": "escalated", "decision.recorded": "decision",
            "decision.refused": "decision refused", "approval.timeout": "approval timed out",
            "action.intent": "applying", "action.result": "applied",
            "action.failed": "action failed", "action.reverted": "reverted",
            "containment.rollback": "rolled back", "containment.resolved": "resolved",
            "containment.confirmed": "confirmed", "break_glass": "break-glass",
            "review.opened": "review opened", "review.acknowledged": "review acknowledged",
            "notification.sent": "notified",
        }.get(r.type.value, r.type.value)
        detail = d.get("action") or actions.get(r.action_id or "") or d.get("playbook") or ""
        if r.type is AuditType.decision_recorded:
            detail = (f"{d.get('verdict')} on {d.get('action', '')}: "
                      f"{d.get('approvals')} approval(s), {d.get('outcome')}, "
                      f"via {d.get('channel')}")
        elif r.type is AuditType.decision_refused:
            detail = f"{d.get('verdict')} on {d.get('step_id')}, via {d.get('channel')}"
        out.append({"record": r, "what": what, "detail": detail,
                    "before": d.get("before") if isinstance(d.get("before"), dict) else None,
                    "after": d.get("after") if isinstance(d.get("after"), dict) else None})
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Top-level keys whose value changed, as (key, before, after)."""
    if not before and not after:
        return []
    before, after = before or {}, after or {}
    return [{"key": k, "before": before.get(k), "after": after.get(k)}
            for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
