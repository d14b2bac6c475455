"""Matching and planning: (alert, identity, playbooks, state) → the steps to run next.

PURE and deterministic: no clock, no I/O, no randomness, no reliance on set or dict order.
The containment workflow calls :func:`plan` inside workflow code and ``stanch playbook
simulate`` calls the same function, so what simulate shows is what runs. Imports only
pydantic, the stdlib and :mod:`stanch.models`/:mod:`stanch.playbook.schema`/
:mod:`stanch.capabilities` (pure data).

When ``identity.provider_type`` is set, each step is fitted to what that adapter declares
(:mod:`stanch.capabilities`): a step whose action the provider lacks is planned with
``skipped`` set (or replaced by its ``fallback``), and one with a parameter the provider
cannot honour is ``refused``. Neither runs; both are shown with the reason.

Inputs the workflow must pass the same way every time:

- ``state.applied_step_ids``: steps already applied (never planned again);
- ``state.applied_actions``: their actions (for ``when: {applied: …}``);
- ``state.alerts_seen``: alerts seen for this identity, *counting the current one* (the
  workflow increments before planning; 0 is read as 1, so ``PlanState()`` is a first alert);
- ``state.categories_seen``: categories of those alerts, the current one included.

``owner`` in approvals and notifications becomes ``user:<owner>`` (or ``<team>`` for an
inventory owner written ``group:<team>``); without an owner it becomes the playbook's
``owner_fallback`` groups. ``custodian`` resolves the same way from the custodian, and to
nobody when the inventory names none.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from stanch.capabilities import declaration, unhonoured
from stanch.models import (
    Action,
    Alert,
    ApprovalPolicy,
    EscalationStage,
    IdentityContext,
    Plan,
    PlannedStep,
    PlanState,
)
from stanch.playbook.reversibility import (
    DEFAULT_LOSS_APPROVERS,
    credentials_named,
    declare,
    gated_on_timeout,
    target_of,
    target_suffix,
)
from stanch.playbook.schema import (
    CUSTODIAN,
    OWNER,
    Approval,
    Condition,
    Match,
    Playbook,
    Step,
)


class StepDecision(BaseModel):
    """Why one ladder step is or is not in the plan (for simulate and the audit trail)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    step_id: str
    action: Action
    planned: bool
    reason: str = Field(description="Why it is planned, waived, skipped or held back.")
    step: PlannedStep | None = None


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: str
    matched: bool
    reason: str


class Explanation(BaseModel):
    """The whole reasoning behind a :class:`~stanch.models.Plan`."""

    model_config = ConfigDict(extra="forbid")

    plan: Plan
    candidates: list[Candidate] = Field(default_factory=list)
    ceiling: Action | None = None
    decisions: list[StepDecision] = Field(default_factory=list)


def step_id(playbook: str, index: int, action: Action, target: Sequence[str] = ()) -> str:
    """Stable step id: ``leaked-secret:1:revoke``, with what it acts on when the alert names
    it: ``privilege-escalation:1:reduce_scope[Domain Admins]``."""
    return f"{playbook}:{index}:{action.value}{target_suffix(target)}"


def principal_for(owner: str) -> str:
    """Inventory owner → approver/notification target: ``alice`` → ``user:alice``,
    ``group:platform-team`` → ``platform-team``, ``user:bob`` unchanged."""
    if owner.startswith("group:"):
        return owner.removeprefix("group:")
    return owner if ":" in owner else f"user:{owner}"


# --------------------------------------------------------------------------- public API


def match(
    alert: Alert, identity: IdentityContext, playbooks: Sequence[Playbook]
) -> Playbook | None:
    """The playbook for this alert and identity: highest priority, then name; or None."""
    for pb in _ordered(playbooks):
        if _match_failure(pb.match, alert, identity) is None:
            return pb
    return None


def plan(
    alert: Alert,
    identity: IdentityContext,
    playbooks: Sequence[Playbook],
    state: PlanState,
    *,
    declared: bool = True,
) -> Plan:
    """Steps to run next, in ladder order: not yet applied, ``when`` holding, up to the rung
    the alert's rules allow. Same inputs, same plan — safe inside workflow code.

    ``declared=False`` plans as before declarations existed (no per-target step ids, no
    loss gating): the workflow passes it when replaying a history recorded that way."""
    return explain(alert, identity, playbooks, state, declared=declared).plan


def explain(
    alert: Alert,
    identity: IdentityContext,
    playbooks: Sequence[Playbook],
    state: PlanState,
    *,
    declared: bool = True,
) -> Explanation:
    """:func:`plan` with its reasons: which playbooks were considered, the ceiling, and a
    decision for every ladder step."""
    candidates = []
    chosen: Playbook | None = None
    for pb in _ordered(playbooks):
        failure = _match_failure(pb.match, alert, identity)
        if chosen is None and failure is None:
            chosen = pb
            candidates.append(Candidate(playbook=pb.name, matched=True, reason="matches"))
        elif failure is None and chosen is not None:
            reason = f"matches too, but {chosen.name} ranks first (priority, then name)"
            candidates.append(Candidate(playbook=pb.name, matched=False, reason=reason))
        else:
            candidates.append(Candidate(playbook=pb.name, matched=False, reason=failure))
    if chosen is None:
        reason = (
            f"no playbook matches {alert.category.value} from {alert.source} "
            f"for {identity.ref.key}"
        )
        return Explanation(plan=Plan(playbook=None, reason=reason), candidates=candidates)

    top, why = _ceiling(chosen, alert, identity, state)
    decisions = _decide(chosen, top, alert, identity, state, declared)
    steps = [d.step for d in decisions if d.step is not None]
    if top is None:
        reason = f"{chosen.name}: {why}"
    else:
        runs = [s for s in steps if s.skipped is None]
        reason = f"{chosen.name}: {why}; {len(runs)} of {len(chosen.ladder)} steps planned"
        for s in steps:
            if s.skipped is not None:
                reason += f"; {s.skipped}"
    return Explanation(
        plan=Plan(playbook=chosen.name, steps=steps, reason=reason),
        candidates=candidates,
        ceiling=top,
        decisions=decisions,
    )


# --------------------------------------------------------------------------- ceiling and steps


def _ordered(playbooks: Sequence[Playbook]) -> list[Playbook]:
    return sorted(playbooks, key=lambda pb: (-pb.priority, pb.name))


def _ceiling(
    pb: Playbook, alert: Alert, identity: IdentityContext, state: PlanState
) -> tuple[Action | None, str]:
    if pb.requested_level:
        raw = alert.raw.get("level")
        try:
            requested = Action(raw) if isinstance(raw, str) else None
        except ValueError:
            requested = None
        if requested is None:
            choices = ", ".join(a.value for a in Action)
            return None, f"alert.raw['level'] must be one of {choices} (got {raw!r})"
        return requested, f"requested level {requested.value}"
    best: Action | None = None
    best_rule = -1
    for i, rule in enumerate(pb.rules):
        if _failure(rule.when, alert, identity, state, ()) is None and (
            best is None or rule.up_to.rung > best.rung
        ):
            best, best_rule = rule.up_to, i
    if best is None:
        return None, "no rule applies to this alert"
    return best, f"rules[{best_rule}] allows up to {best.value}"


def _decide(
    pb: Playbook,
    top: Action | None,
    alert: Alert,
    identity: IdentityContext,
    state: PlanState,
    declared: bool = True,
) -> list[StepDecision]:
    applied = set(state.applied_step_ids)
    earlier: list[Action] = list(state.applied_actions)
    decisions = []
    for i, step in enumerate(pb.ladder):
        target = target_of(step, alert) if declared else []
        sid = step_id(pb.name, i, step.action, target)
        reason: str | None
        if sid in applied:
            reason = "already applied"
        elif top is None:
            reason = "no rung allowed"
        elif step.action.rung > top.rung:
            reason = f"above {top.value}, the highest rung this alert allows"
        else:
            failed = _failure(step.when, alert, identity, state, earlier)
            reason = f"when: {failed}" if failed else None
        if reason is not None:
            decisions.append(
                StepDecision(index=i, step_id=sid, action=step.action, planned=False,
                             reason=reason)
            )
            continue
        step, skipped, refused, note = _fit(step, identity)
        if skipped is None and top is not None and step.action.rung > top.rung:
            skipped = (f"{note}, which is above {top.value}, the highest rung this alert "
                       "allows: skipped")
        if note:  # a fallback replaced the step: identified (and targeted) as what runs
            target = target_of(step, alert) if declared else []
            sid = step_id(pb.name, i, step.action, target)
            if sid in applied:
                decisions.append(
                    StepDecision(index=i, step_id=sid, action=step.action, planned=False,
                                 reason=f"{note}; already applied"))
                continue
        planned, why = _resolve_step(pb, i, sid, step, alert, identity, state, earlier)
        if skipped is not None:
            planned = planned.model_copy(update={"skipped": skipped, "refused": refused,
                                                 "target": target})
            why = skipped
        else:
            if declared:
                planned, why = _declare(pb, step, planned, why, identity, target)
            earlier.append(step.action)
            why = f"{note}; {why}" if note else why
        decisions.append(
            StepDecision(index=i, step_id=sid, action=step.action, planned=True, reason=why,
                         step=planned)
        )
    return decisions


def _resolve_step(
    pb: Playbook,
    index: int,
    sid: str,
    step: Step,
    alert: Alert,
    identity: IdentityContext,
    state: PlanState,
    earlier: Sequence[Action],
) -> tuple[PlannedStep, str]:
    approval: ApprovalPolicy | None = None
    why = "automatic"
    if step.approval is not None:
        waive = step.approval.waive_when
        if waive is not None and _failure(waive, alert, identity, state, earlier) is None:
            why = "automatic: approval waived (waive_when holds)"
        else:
            approval = _resolve_approval(step.approval, pb, identity)
            why = "waits for approval from " + ", ".join(approval.groups)
    elif step.break_glass:
        why = "automatic: break glass"
    params = dict(step.params)
    if step.action is Action.reduce_scope and params.get("only_new_grants") and alert.grants:
        params["new_grants"] = list(alert.grants)
    if step.action is Action.revoke and params.get("target") == "credential":
        params["credentials"] = _credentials(alert)
    planned = PlannedStep(
        step_id=sid,
        playbook=pb.name,
        index=index,
        action=step.action,
        params=params,
        approval=approval,
        revert_after=step.revert_after,
        irreversible=step.irreversible,
        break_glass=step.break_glass,
        break_glass_reason=step.break_glass_reason,
        notify=_targets(step.notify, pb, identity),
        description=step.description,
    )
    return planned, why


def _declare(pb: Playbook, step: Step, planned: PlannedStep, why: str,
             identity: IdentityContext, target: list[str]) -> tuple[PlannedStep, str]:
    """Attach the adapter's declarations; a loss not accepted brings a human back in."""
    planned = declare(planned, step, identity).model_copy(update={"target": target})
    if step.action is Action.rotate and target:
        planned.params.setdefault("credentials", list(target))
    if not planned.loss_gate:
        return planned, why
    if step.approval is not None:
        approval = _resolve_approval(step.approval, pb, identity)
    else:
        groups = list(pb.owner_fallback or DEFAULT_LOSS_APPROVERS)
        approval = ApprovalPolicy(groups=groups)
    approval = gated_on_timeout(approval)
    return (planned.model_copy(update={"approval": approval}),
            f"waits for approval from {', '.join(approval.groups)}: {planned.loss_gate}")
def _fit(step: Step, identity: IdentityContext) -> tuple[Step, str | None, bool, str]:
    """The step as the identity's provider can run it: ``(step, skipped, refused, note)``.

    A missing action is skipped with the reason (never a failure at run time); a parameter
    the provider cannot honour is refused rather than silently dropped. A declared
    ``fallback`` replaces the step in both cases when the provider can run the fallback.
    """
    ptype = identity.provider_type
    if ptype is None or step.action is Action.notify:
        return step, None, False, ""
    problem, refused = _misfit(ptype, step.action, step.params, identity)
    if problem is None:
        return step, None, False, ""
    fb = step.fallback
    if fb is not None:
        action = fb.action or step.action
        params = fb.params if fb.params is not None else step.params
        if action is Action.notify or _misfit(ptype, action, params, identity)[0] is None:
            alt = step.model_copy(update={"action": action, "params": params, "fallback": None,
                                          "description": fb.description or step.description})
            return alt, None, False, f"{problem}; fallback: {action.value}"
    return step, problem, refused, ""


def _misfit(ptype: str, action: Action, params: dict[str, object],
            identity: IdentityContext) -> tuple[str | None, bool]:
    decl = declaration(ptype, action)
    if not decl.supported:
        why = f" ({decl.reason})" if decl.reason else ""
        return f"{action.value}: not supported by {ptype}, skipped{why}", False
    kind = identity.ref.kind
    if kind not in decl.kinds:
        return f"{action.value}: not supported by {ptype} for a {kind.value}, skipped", False
    bad = unhonoured(ptype, action, params)
    if bad:
        return (f"{action.value}: {ptype} cannot honour {'; '.join(bad)}, refused (fix the "
                "playbook: drop the parameter or declare a fallback)"), True
    return None, False


def _resolve_approval(a: Approval, pb: Playbook, identity: IdentityContext) -> ApprovalPolicy:
    groups = _targets(a.groups, pb, identity)
    owner_must = a.owner_must_approve and identity.owner is not None
    if owner_must and identity.owner is not None:
        groups = _dedup([*groups, principal_for(identity.owner)])
    return ApprovalPolicy(
        groups=groups,
        quorum=a.quorum,
        deny_quorum=a.deny_quorum,
        deadline=a.deadline,
        escalation=[
            EscalationStage(
                after=s.after,
                groups=_targets(s.groups, pb, identity),
                notify=_targets(s.notify, pb, identity),
            )
            for s in a.escalation
        ],
        on_timeout=a.on_timeout,
        owner_must_approve=owner_must,
    )


def _targets(names: Sequence[str], pb: Playbook, identity: IdentityContext) -> list[str]:
    out: list[str] = []
    for name in names:
        if name == OWNER:
            owner = identity.owner
            out.extend([principal_for(owner)] if owner else pb.owner_fallback)
        elif name == CUSTODIAN:
            # No custodian is no one extra: the owner (or its fallback) stays accountable.
            out.extend([principal_for(identity.custodian)] if identity.custodian else [])
        else:
            out.append(name)
    return _dedup(out)


def _dedup(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _credentials(alert: Alert) -> list[str]:
    return credentials_named(alert)


# --------------------------------------------------------------------------- conditions


def _match_failure(m: Match, alert: Alert, identity: IdentityContext) -> str | None:
    cond = Condition(
        severity=m.min_severity,
        confidence=m.min_confidence,
        sources=m.sources,
        categories=m.categories,
        identity_kinds=m.identity_kinds,
        environment=m.environment,
        criticality=m.criticality,
        attributes=m.attributes,
        in_inventory=m.in_inventory,
    )
    return _failure(cond, alert, identity, PlanState(), ())


def _failure(
    c: Condition,
    alert: Alert,
    identity: IdentityContext,
    state: PlanState,
    earlier: Sequence[Action],
) -> str | None:
    """The first clause of ``c`` that does not hold, in words; None when all hold."""
    if c.severity is not None and alert.severity.rank < c.severity.rank:
        return f"severity {alert.severity.value} is below {c.severity.value}"
    if c.confidence is not None and alert.confidence.rank < c.confidence.rank:
        return f"confidence {alert.confidence.value} is below {c.confidence.value}"
    if c.sources and alert.source not in c.sources:
        return f"source {alert.source} is not one of {', '.join(c.sources)}"
    if c.categories and alert.category not in c.categories:
        return f"category {alert.category.value} is not one of {_join(c.categories)}"
    kind = identity.ref.kind
    if c.identity_kinds and kind not in c.identity_kinds:
        return f"identity kind {kind.value} is not one of {_join(c.identity_kinds)}"
    if c.environment and identity.environment not in c.environment:
        return f"environment {identity.environment} is not one of {', '.join(c.environment)}"
    crit = identity.criticality
    if c.criticality is not None and (crit is None or crit.rank < c.criticality.rank):
        return f"criticality {crit.value if crit else 'unknown'} is below {c.criticality.value}"
    for key in sorted(c.attributes):
        value = identity.attributes.get(key)
        if value not in c.attributes[key]:
            return f"attribute {key}={value} is not one of {', '.join(c.attributes[key])}"
    if c.in_inventory is not None and identity.in_inventory != c.in_inventory:
        return "identity is in the inventory" if identity.in_inventory else "not in inventory"
    if c.has_owner is not None and (identity.owner is not None) != c.has_owner:
        return "identity has an owner" if identity.owner else "identity has no owner"
    missing = [a for a in c.applied if a not in earlier]
    if missing:
        return f"{_join(missing)} not applied earlier"
    count = max(state.alerts_seen, 1)
    if c.alerts is not None and count < c.alerts:
        return f"{count} alert(s) so far, fewer than {c.alerts}"
    if c.seen_categories and not any(x in state.categories_seen for x in c.seen_categories):
        return f"no alert of category {_join(c.seen_categories)} so far"
    if c.any_:
        failures = [_failure(sub, alert, identity, state, earlier) for sub in c.any_]
        if all(f is not None for f in failures):
            return "none of any: " + "; ".join(f for f in failures if f)
    if c.not_ is not None and _failure(c.not_, alert, identity, state, earlier) is None:
        return "the `not` condition holds"
    return None


def _join(values: Sequence[Action] | Sequence[object]) -> str:
    return ", ".join(getattr(v, "value", str(v)) for v in values)
