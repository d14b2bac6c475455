"""What a planned step acts on and what it loses, for the planner (pure, deterministic).

- A step is identified by what it acts on: a ``reduce_scope`` with ``only_new_grants`` acts
  on the grants the alert names, a credential ``revoke`` or a ``rotate`` on the credentials
  it names. Those targets become part of the step id, so a later alert naming a different
  grant is a new step, while the same target is never applied twice.
- What the action changes, restores and loses comes from the identity's adapter
  declarations (:mod:`stanch.capabilities`), before anything runs. A loss the step does not
  accept (``accept_loss``) needs a human: the step's approval applies even when its
  ``waive_when`` holds, never approves on timeout, and a step without approval gets the
  playbook's ``owner_fallback`` (or ``soc-approvers``) as approvers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from stanch.capabilities import adapter_type, declaration
from stanch.models import Action, Alert, IdentityContext, NameType, PlannedStep, TimeoutPolicy
from stanch.playbook.schema import Step

_CREDENTIAL_NAMES = (NameType.access_key_id, NameType.token)
_TARGET_MAX = 64
DEFAULT_LOSS_APPROVERS = ("soc-approvers",)


def credentials_named(alert: Alert) -> list[str]:
    """Credential ids the alert mentions (access key ids, tokens), first mention first."""
    return list(dict.fromkeys(m.name for m in alert.mentions if m.name_type in _CREDENTIAL_NAMES))


def target_of(step: Step, alert: Alert) -> list[str]:
    """What ``step`` acts on for this alert; empty: the identity as a whole."""
    if step.action is Action.reduce_scope and step.params.get("only_new_grants"):
        return sorted(dict.fromkeys(alert.grants))
    if step.action is Action.revoke and step.params.get("target") == "credential":
        return sorted(credentials_named(alert))
    if step.action is Action.rotate:
        return sorted(credentials_named(alert))
    return []


def target_suffix(target: Sequence[str]) -> str:
    """``[a,b]`` appended to a step id; a long target by its digest (ids stay typeable)."""
    if not target:
        return ""
    text = ",".join(target)
    if len(text) > _TARGET_MAX:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"[{text}]"


def declare(planned: PlannedStep, step: Step, identity: IdentityContext) -> PlannedStep:
    """``planned`` with what its action changes, restores and loses on the identity's
    adapter, and ``loss_gate`` set when a loss the step does not accept needs a human."""
    kind = identity.ref.kind
    configured = {identity.ref.provider: identity.provider_type} if identity.provider_type \
        else None
    adapter = adapter_type(identity.ref.provider, configured)
    if adapter is None or planned.action is Action.notify:
        return planned
    d = declaration(adapter, planned.action)
    if not d.supported or kind not in d.kinds:
        return planned
    loses = list(d.losses(planned.params))
    unaccepted = [x for x in loses if x not in step.accept_loss]
    gate = ""
    if unaccepted and not planned.irreversible and not planned.break_glass:
        gate = (f"{planned.action.value} on {adapter} loses {', '.join(unaccepted)} "
                "(not in accept_loss)")
    return planned.model_copy(update={
        "changes": list(d.changes), "undo_restores": list(d.undo_restores), "loses": loses,
        "loss_gate": gate})


def gated_on_timeout(policy: Any) -> Any:
    """A loss-gated approval never approves by timing out."""
    if policy.on_timeout is TimeoutPolicy.approve:
        return policy.model_copy(update={"on_timeout": TimeoutPolicy.deny})
    return policy
