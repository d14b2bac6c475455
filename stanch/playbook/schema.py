"""The playbook language: what a file in ``playbooks/`` may say, and what each field means.

The field descriptions are the reference documentation (``stanch playbook schema`` prints
them as JSON Schema). Pure: imports only pydantic, the stdlib and :mod:`stanch.models`, because
the containment workflow evaluates playbooks inside workflow code.

A playbook has three parts:

- ``match`` — which alerts and identities it is for;
- ``rules`` — how far up the ladder an alert may take the identity (``up_to``); a later,
  worse alert for the same identity matches a higher rule and raises the ceiling;
- ``ladder`` — ordered steps, mildest first, each with its own ``when``, ``approval``,
  ``revert_after`` and irreversibility.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from stanch.capabilities import LOSSES, adapters_for, declaration, possible_losses
from stanch.models import Action, Category, IdentityKind, Level, TimeoutPolicy
from stanch.playbook.errors import describe

Loc = tuple[str | int, ...]

OWNER = "owner"
"""Pseudo-group: the identity's inventory owner (resolved when planning)."""
CUSTODIAN = "custodian"
"""Pseudo-target for notifications: the identity's inventory custodian."""

_DURATION_RE = re.compile(r"^(?:\d+[smhdw])+$")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def parse_duration(value: object) -> timedelta:
    """``30m``, ``4h``, ``2d``, ``1h30m`` → timedelta. Bare numbers are refused: units matter."""
    if isinstance(value, timedelta):
        return value
    text = value.strip() if isinstance(value, str) else None
    if not text or not _DURATION_RE.match(text):
        raise ValueError(f"must be a duration like 30m, 4h or 2d (got {value!r})")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"must be longer than zero (got {value!r})")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Inverse of :func:`parse_duration` for display: ``timedelta(hours=4)`` → ``4h``."""
    seconds = int(value.total_seconds())
    parts = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


# Serialized in the same `4h` form it is written in, so a playbook survives a JSON round trip
# (it travels inside Temporal payloads).
Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


class _Spec(BaseModel):
    # Playbooks travel inside Temporal payloads: serialize by alias (`any`, `not`) and accept
    # both spellings back, so a dumped playbook validates to an equal one.
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )


# --------------------------------------------------------------------------- conditions


class Condition(_Spec):
    """A test on the alert, the identity's inventory record and the containment so far.

    Every field that is set must hold (AND); unset fields are not tested. Use ``any`` for OR
    and ``not`` for negation.
    """

    severity: Level | None = Field(
        default=None, description="The alert's severity is at least this level."
    )
    confidence: Level | None = Field(
        default=None, description="The alert's confidence is at least this level."
    )
    sources: list[str] = Field(
        default_factory=list, description="The alert came from one of these sources."
    )
    categories: list[Category] = Field(
        default_factory=list, description="The alert's category is one of these."
    )
    identity_kinds: list[IdentityKind] = Field(
        default_factory=list, description="The identity is one of these kinds."
    )
    environment: list[str] = Field(
        default_factory=list,
        description="The identity's inventory environment is one of these (e.g. prod).",
    )
    criticality: Level | None = Field(
        default=None,
        description="The identity's inventory criticality is at least this level "
        "(an identity without one never matches).",
    )
    attributes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Inventory attributes: each named attribute has one of the listed values.",
    )
    in_inventory: bool | None = Field(
        default=None, description="The identity is (true) or is not (false) in the inventory."
    )
    has_owner: bool | None = Field(
        default=None, description="The inventory names (true) or does not name (false) an owner."
    )
    applied: list[Action] = Field(
        default_factory=list,
        description="Each of these actions was applied earlier in this containment, or is "
        "planned by an earlier step of this ladder.",
    )
    alerts: int | None = Field(
        default=None,
        ge=1,
        description="At least this many alerts for this identity, counting the current one "
        "(2 means: on repeat).",
    )
    seen_categories: list[Category] = Field(
        default_factory=list,
        description="This containment has seen an alert (the current one included) of one "
        "of these categories.",
    )
    any_: list[Condition] = Field(
        default_factory=list, alias="any", description="At least one of these conditions holds."
    )
    not_: Condition | None = Field(
        default=None, alias="not", description="This condition does not hold."
    )


class Match(_Spec):
    """Which alerts and identities a playbook is for. Empty lists mean: any."""

    sources: list[str] = Field(
        default_factory=list, description="Alert sources, e.g. `splunk`, `guardduty`, `manual`."
    )
    categories: list[Category] = Field(
        default_factory=list, description="Alert categories (see `stanch.models.Category`)."
    )
    min_severity: Level = Field(
        default=Level.info, description="The alert's severity must be at least this."
    )
    min_confidence: Level = Field(
        default=Level.info, description="The alert's confidence must be at least this."
    )
    identity_kinds: list[IdentityKind] = Field(
        default_factory=list, description="Identity kinds, e.g. `user`, `service_account`."
    )
    environment: list[str] = Field(
        default_factory=list, description="Inventory environments, e.g. `prod`, `dev`."
    )
    criticality: Level | None = Field(
        default=None, description="Inventory criticality at least this level."
    )
    attributes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Inventory attributes: each named attribute has one of the listed values.",
    )
    in_inventory: bool | None = Field(
        default=None, description="Only identities that are (true) or are not (false) inventoried."
    )


class Rule(_Spec):
    """How far up the ladder an alert may go. The highest ``up_to`` among holding rules wins."""

    when: Condition = Field(
        default_factory=Condition, description="The rule applies when this holds."
    )
    up_to: Action = Field(description="Highest rung steps may reach when the rule applies.")
    description: str = Field(default="", description="Why this rule exists, for reviewers.")


# --------------------------------------------------------------------------- approvals


class Escalation(_Spec):
    """A stage of escalation while an approval waits."""

    after: Duration = Field(description="How long after the request this stage starts (`20m`).")
    groups: list[str] = Field(
        min_length=1, description="Groups that may also decide from then on (`owner` allowed)."
    )
    notify: list[str] = Field(
        default_factory=list, description="Extra targets told when the stage starts."
    )


class Approval(_Spec):
    """Who must approve a step before it runs, and what happens if nobody does."""

    groups: list[str] = Field(
        min_length=1,
        description="Approver groups. `owner` is the identity's inventory owner: resolved to "
        "`user:<owner>` (or to the team, for a `group:<team>` owner), or to the playbook's "
        "`owner_fallback` when the inventory names none.",
    )
    quorum: int = Field(default=1, ge=1, description="Distinct approvals needed to proceed.")
    deny_quorum: int = Field(default=1, ge=1, description="Distinct denials that stop the step.")
    deadline: Duration = Field(
        default=timedelta(minutes=30),
        description="How long the request stays open before `on_timeout` applies.",
    )
    escalation: list[Escalation] = Field(
        default_factory=list, description="Stages that widen the approver set while it waits."
    )
    on_timeout: TimeoutPolicy = Field(
        default=TimeoutPolicy.deny,
        description="What the deadline does: `deny` (default), `escalate` to the escalation "
        "stages, or `approve` (never allowed on irreversible steps).",
    )
    owner_must_approve: bool = Field(
        default=False,
        description="The inventory owner must be among the approvers (not just any member).",
    )
    waive_when: Condition | None = Field(
        default=None,
        description="Approval is not needed when this holds (e.g. high confidence on a "
        "reversible step). Not allowed on irreversible steps.",
    )


# --------------------------------------------------------------------------- action params


class NotifyParams(_Spec):
    """Parameters of `notify`: tells the step's `notify` targets, changes nothing."""

    message: str = Field(default="", description="Extra text for the notification.")
    request_ack: bool = Field(
        default=False, description="Ask the targets to acknowledge (e.g. the owner confirms)."
    )


class ReduceScopeParams(_Spec):
    """Parameters of `reduce_scope`; the provider captures what it removes so it can restore."""

    only_new_grants: bool = Field(
        default=False,
        description="Undo only the grants the alert names as new (privilege escalation).",
    )
    remove_groups: list[str] = Field(
        default_factory=list, description="Groups to remove the identity from (empty: risky ones)."
    )
    detach_policies: list[str] = Field(
        default_factory=list, description="Policies/roles to detach (empty: risky ones)."
    )
    attach_deny_policy: bool = Field(
        default=False, description="Attach a deny-all policy (AWS `AWSDenyAll`) instead."
    )
    drop_grants: bool = Field(
        default=False, description="Drop OAuth grants / app role assignments (OAuth apps)."
    )
    drop_scopes: list[str] = Field(
        default_factory=list, description="Only these OAuth scopes (empty with drop_grants: all)."
    )


class ForceReauthParams(_Spec):
    """Parameters of `force_reauth`: sessions are revoked; it has no undo."""

    refresh_tokens: bool = Field(default=True, description="Revoke refresh tokens as well.")
    assumable_roles: bool = Field(
        default=False,
        description="Also revoke sessions of roles the identity can assume (leaked AWS keys).",
    )


class RotateParams(_Spec):
    """Parameters of `rotate`: issue a new secret, deactivate (never delete) the old one."""

    credential: Literal["all", "password", "access_key", "client_secret", "secret_id"] = Field(
        default="all", description="Which credential to rotate."
    )
    reset_factors: bool = Field(
        default=False, description="Also reset MFA factors (risky sign-in on repeat)."
    )


class RevokeParams(_Spec):
    """Parameters of `revoke`: disable the identity or just the credentials named by the alert."""

    target: Literal["identity", "credential"] = Field(
        default="identity",
        description="`identity` disables the account/app; `credential` deactivates only the "
        "credentials the alert names (the planner fills `credentials`).",
    )
    delete: bool = Field(
        default=False, description="Delete instead of disable. Irreversible: human approval only."
    )


PARAMS_BY_ACTION: dict[Action, type[_Spec]] = {
    Action.notify: NotifyParams,
    Action.reduce_scope: ReduceScopeParams,
    Action.force_reauth: ForceReauthParams,
    Action.rotate: RotateParams,
    Action.revoke: RevokeParams,
}

NO_UNDO = frozenset({Action.notify, Action.force_reauth})
"""Actions that cannot be reverted: `revert_after` on them is an error."""


# --------------------------------------------------------------------------- ladder


class Fallback(_Spec):
    """The replacement for a step its provider cannot run as written."""

    action: Action | None = Field(default=None, description="Default: the step's own action.")
    params: dict[str, Any] | None = Field(
        default=None, description="Default: the step's own params.")
    description: str = Field(default="", description="Shown instead of the step's.")


class Step(_Spec):
    """One rung of the ladder."""

    action: Action = Field(
        description="What to do: notify, reduce_scope, force_reauth, rotate or revoke."
    )
    description: str = Field(default="", description="What the step is for, shown to approvers.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Provider-neutral parameters, checked per action (see the *Params models).",
    )
    when: Condition = Field(
        default_factory=Condition,
        description="The step is planned only when this holds (on alert, identity, earlier steps).",
    )
    approval: Approval | None = Field(
        default=None, description="Human approval needed before the step runs; none: automatic."
    )
    notify: list[str] = Field(
        default_factory=list,
        description="Who is told when the step runs (for `notify`: who is told). Groups, "
        "`user:<id>`, or the pseudo-targets `owner` and `custodian`.",
    )
    revert_after: Duration | None = Field(
        default=None,
        description="Time-bound containment: undo automatically after this long (`4h`) unless "
        "an analyst confirms. Not allowed on irreversible steps or on actions with no undo.",
    )
    irreversible: bool = Field(
        default=False,
        description="The step cannot be undone (e.g. deleting). Requires `approval`, or "
        "`break_glass: true` with a `break_glass_reason`.",
    )
    break_glass: bool = Field(
        default=False,
        description="Run an irreversible step without approval. Audited loudly; needs a reason.",
    )
    break_glass_reason: str | None = Field(
        default=None, description="Why running this step without a human is acceptable."
    )
    accept_loss: list[str] = Field(
        default_factory=list,
        description="Losses this step may cause without a human (ids: "
        + ", ".join(sorted(LOSSES)) + "). A step whose action loses anything on the "
        "identity's provider (see docs/providers.md) waits for approval, even when "
        "`waive_when` holds, unless every such loss is listed here.",
    )
    optional: bool = Field(
        default=False,
        description="Skipping the step where the identity's provider lacks its action is "
        "expected (e.g. force_reauth on LDAP): `stanch doctor` does not flag it. Any step "
        "the provider lacks is skipped with the reason, optional or not.",
    )
    fallback: Fallback | None = Field(
        default=None,
        description="What runs instead where the provider lacks the action or cannot honour "
        "a parameter: another action and/or other params (same gates, same ceiling).",
    )


class Playbook(_Spec):
    """A containment playbook: for which alerts, how far, and through which gates."""

    name: str = Field(description="Unique name: lowercase letters, digits and dashes.")
    description: str = Field(default="", description="What the playbook is for.")
    priority: int = Field(
        default=0,
        description="When several playbooks match, the highest priority wins (then the name).",
    )
    match: Match = Field(description="Which alerts and identities this playbook handles.")
    requested_level: bool = Field(
        default=False,
        description="Manual containment: the ceiling is the rung the responder requested, "
        "passed as `alert.raw['level']` (an action name). `rules` may then be empty.",
    )
    rules: list[Rule] = Field(
        default_factory=list,
        description="Which alerts start or raise which rung. A later, worse alert that meets a "
        "higher rule escalates the same identity.",
    )
    owner_fallback: list[str] = Field(
        default_factory=list,
        description="Groups that stand in for `owner` when the inventory names no owner.",
    )
    ladder: list[Step] = Field(min_length=1, description="Steps, mildest first.")

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"must be lowercase letters, digits and dashes (got {v!r})")
        return v


# --------------------------------------------------------------------------- semantic checks


def semantic_errors(pb: Playbook) -> list[tuple[Loc, str]]:
    """Checks the types cannot express, each with the field path it is about."""
    errors: list[tuple[Loc, str]] = []
    if not pb.rules and not pb.requested_level:
        errors.append((("rules",), "at least one rule is needed (or requested_level: true)"))
    for i, step in enumerate(pb.ladder):
        errors.extend(((("ladder", i, *loc)), msg) for loc, msg in _step_errors(step, pb))
    return errors


def _step_errors(step: Step, pb: Playbook) -> list[tuple[Loc, str]]:
    errors: list[tuple[Loc, str]] = []
    model = PARAMS_BY_ACTION[step.action]
    try:
        model.model_validate(step.params)
    except ValidationError as err:
        for e in err.errors():
            msg = "unknown parameter" if e["type"] == "extra_forbidden" else describe(e)
            errors.append((("params", *e["loc"]), f"{msg} for {step.action.value}"))
    if step.irreversible and step.approval is None and not step.break_glass:
        errors.append(
            (("irreversible",), "irreversible step needs approval "
             "(or break_glass: true with a break_glass_reason)")
        )
    if step.break_glass and not (step.break_glass_reason or "").strip():
        errors.append((("break_glass",), "break_glass needs a break_glass_reason"))
    if step.break_glass_reason and not step.break_glass:
        errors.append((("break_glass_reason",), "only meaningful with break_glass: true"))
    if step.revert_after is not None:
        if step.irreversible:
            errors.append((("revert_after",), "an irreversible step cannot be reverted"))
        elif step.action in NO_UNDO:
            errors.append((("revert_after",), f"{step.action.value} has no undo to run"))
    if step.action is Action.revoke and step.params.get("delete") is True and not step.irreversible:
        errors.append((("params", "delete"), "deleting cannot be undone: set irreversible: true"))
    if step.approval is not None:
        errors.extend((("approval", *loc), msg) for loc, msg in _approval_errors(step, pb))
    errors.extend(_loss_errors(step, pb))
    return errors


_CLAIMS_REVERSIBLE = re.compile(r"(?<!ir)reversible", re.IGNORECASE)


def _loss_errors(step: Step, pb: Playbook) -> list[tuple[Loc, str]]:
    """What the step's action may lose on the providers it may run on, against what the
    step says: its description, its approval and its ``accept_loss``."""
    errors: list[tuple[Loc, str]] = []
    may_lose = possible_losses(step.action, pb.match.identity_kinds, step.params)
    ever = {loss for t in adapters_for(step.action, pb.match.identity_kinds)
            for loss in declaration(t, step.action).all_losses()}
    for j, loss in enumerate(step.accept_loss):
        if loss not in LOSSES:
            errors.append((("accept_loss", j), f"unknown loss {loss!r} (known: "
                           f"{', '.join(sorted(LOSSES))})"))
        elif loss not in ever:
            errors.append((("accept_loss", j), f"{step.action.value} never loses {loss} on "
                           "any provider: remove it"))
    if not may_lose or step.irreversible:
        return errors
    where = "; ".join(f"{loss} on {', '.join(ts)}" for loss, ts in sorted(may_lose.items()))
    if _CLAIMS_REVERSIBLE.search(step.description):
        errors.append((("description",), f"says reversible, but {step.action.value} loses "
                       f"{where}: describe what rollback cannot restore"))
    unaccepted = sorted(set(may_lose) - set(step.accept_loss))
    if unaccepted and step.approval is None and not step.break_glass:
        errors.append((("accept_loss",), f"{step.action.value} loses {where}: add an "
                       f"approval (needed there), or accept_loss: [{', '.join(unaccepted)}]"))
    return errors


def _approval_errors(step: Step, pb: Playbook) -> list[tuple[Loc, str]]:
    approval = step.approval
    assert approval is not None
    errors: list[tuple[Loc, str]] = []
    if step.irreversible and approval.waive_when is not None:
        errors.append((("waive_when",), "irreversible steps always need a human"))
    if step.irreversible and approval.on_timeout is TimeoutPolicy.approve:
        errors.append((("on_timeout",), "irreversible steps cannot be approved by timeout"))
    if approval.on_timeout is TimeoutPolicy.escalate and not approval.escalation:
        errors.append((("on_timeout",), "escalate needs at least one escalation stage"))
    if set(approval.groups) <= {OWNER} and not pb.owner_fallback:
        errors.append(
            (("groups",), "only `owner` can approve: set the playbook's owner_fallback for "
             "identities without an owner")
        )
    previous = timedelta(0)
    for j, stage in enumerate(approval.escalation):
        if stage.after <= previous:
            errors.append((("escalation", j, "after"), "stages must start in increasing order"))
        elif approval.on_timeout is not TimeoutPolicy.escalate and stage.after >= approval.deadline:
            errors.append(
                (("escalation", j, "after"),
                 f"starts at {format_duration(stage.after)}, not before the "
                 f"{format_duration(approval.deadline)} deadline: it would never run")
            )
        previous = stage.after
    return errors
