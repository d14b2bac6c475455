"""What each provider adapter can do, declared as data *before* anything runs.

Pure data and pure functions (no provider imports), so the planner, the workflow sandbox,
`stanch playbook simulate`, `stanch doctor`, the API and the console can all read it.

For every adapter type and ladder action an :class:`ActionDeclaration` says whether the
action exists there (and for which identity kinds), which step parameters it honours, what
it changes, what its undo restores, and what is *lost* — state that no undo brings back
(revoked sessions, a new password, a deleted key, history the provider itself discards as a
side effect). A step whose action loses something needs a human unless the playbook waives
it explicitly for that step and that loss.

The adapters in ``activities/providers/`` must behave as declared here; the conformance
suite checks that the declared losses are exactly what differs after undo.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from stanch.models import Action, IdentityKind

ALL_KINDS: frozenset[IdentityKind] = frozenset(IdentityKind)


class ActionDeclaration(BaseModel):
    """One action on one adapter type."""

    model_config = ConfigDict(frozen=True)

    supported: bool = Field(description="Whether the adapter has this action at all.")
    kinds: frozenset[IdentityKind] = Field(
        default=ALL_KINDS, description="Identity kinds the action works on there.")
    params: frozenset[str] | None = Field(
        default=None, description="Step parameters the adapter honours, as `name` (any "
        "value) or `name=value` (only that value); any other parameter is refused at plan "
        "time. None: not reviewed yet, nothing is refused.")
    changes: tuple[str, ...] = Field(default=(), description="What the action changes.")
    undo_restores: tuple[str, ...] = Field(
        default=(), description="What undo puts back as it was.")
    loses: tuple[str, ...] = Field(
        default=(), description="What neither the action nor its undo can bring back.")
    reason: str = Field(default="", description="Why unsupported, or a note for operators.")

    @property
    def reversible(self) -> bool:
        return self.supported and not self.loses


def _unsupported(reason: str) -> ActionDeclaration:
    return ActionDeclaration(supported=False, reason=reason)


def _yes(**kw: object) -> ActionDeclaration:
    return ActionDeclaration(supported=True, **kw)  # type: ignore[arg-type]


# adapter type → action → declaration. Filled per adapter as its behaviour is reviewed; an
# action missing from an adapter's table is unsupported there.
DECLARATIONS: dict[str, dict[Action, ActionDeclaration]] = {
    "mock": {a: _yes() for a in Action if a is not Action.notify},
    "aws_iam": {a: _yes() for a in Action if a is not Action.notify},
    "okta": {a: _yes() for a in Action if a is not Action.notify},
    "entra": {a: _yes() for a in Action if a is not Action.notify},
    "vault": {a: _yes() for a in Action if a is not Action.notify},
    "scim": {
        Action.reduce_scope: _yes(),
        Action.revoke: _yes(),
        Action.force_reauth: _unsupported(
            "SCIM has no sessions: use the identity provider's own API"),
        Action.rotate: _unsupported(
            "SCIM cannot rotate credentials: use the identity provider's own API"),
    },
    "ldap": {
        Action.reduce_scope: _yes(),
        Action.revoke: _yes(),
        Action.rotate: _yes(),
        Action.force_reauth: _unsupported(
            "LDAP has no sessions to revoke: use the identity provider in front of it"),
    },
}


# Where an action works on fewer identity kinds, and which step parameters it honours, as
# reviewed against each adapter (activities/providers/<type>.py). The planner skips a step
# on a kind the action does not take, and refuses a parameter not listed; an adapter with
# no `params` entry here is not checked yet (nothing is refused).
_U, _SA, _SP, _APP = (IdentityKind.user, IdentityKind.service_account,
                      IdentityKind.service_principal, IdentityKind.oauth_app)
_GROUPS = frozenset({"groups", "remove_groups", "only_new_grants"})
_FIT: dict[tuple[str, Action], dict[str, object]] = {
    ("okta", Action.reduce_scope): {"kinds": frozenset({_U})},
    ("okta", Action.force_reauth): {"kinds": frozenset({_U})},
    ("okta", Action.revoke): {"kinds": frozenset({_U})},
    ("okta", Action.rotate): {"kinds": frozenset({_APP})},
    ("entra", Action.force_reauth): {"kinds": frozenset({_U})},
    ("entra", Action.rotate): {"kinds": frozenset({_SP, _APP})},
    ("scim", Action.reduce_scope): {"params": _GROUPS},
    ("scim", Action.revoke): {"params": frozenset()},
    ("ldap", Action.reduce_scope): {"params": _GROUPS},
    ("ldap", Action.revoke): {"params": frozenset()},
    ("ldap", Action.rotate): {"kinds": frozenset({_U, _SA}),
                              "params": frozenset({"password_fingerprint",
                                                   "credential=password"})},
}
for (_type, _action), _fit in _FIT.items():
    DECLARATIONS[_type][_action] = DECLARATIONS[_type][_action].model_copy(update=_fit)


def declaration(adapter_type: str, action: Action) -> ActionDeclaration:
    """The declaration of ``action`` on ``adapter_type``; unknown means unsupported."""
    table = DECLARATIONS.get(adapter_type)
    if table is None:
        return _unsupported(f"unknown adapter type {adapter_type!r}")
    return table.get(action) or _unsupported(f"{adapter_type} has no {action.value}")


def supports(adapter_type: str, action: Action, kind: IdentityKind | None = None) -> bool:
    """Whether ``action`` exists on ``adapter_type`` (for identities of ``kind``)."""
    if action is Action.notify:
        return True
    d = declaration(adapter_type, action)
    return d.supported and (kind is None or kind in d.kinds)


# Filled in by the planner, never written in a playbook: not checked against `params`.
PLANNER_PARAMS = frozenset({"new_grants", "credentials"})


def _spelled(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def unhonoured(adapter_type: str, action: Action, params: dict[str, object]) -> list[str]:
    """The step parameters ``adapter_type`` cannot honour for ``action``, as written.

    A parameter that asks for nothing (false, empty, null) is honoured by everyone.
    """
    honoured = declaration(adapter_type, action).params
    if honoured is None or action is Action.notify:
        return []
    refused = []
    for key in sorted(params):
        value = params[key]
        if key in PLANNER_PARAMS or key.startswith("_") or value in (False, None, "", [], {}):
            continue
        if key not in honoured and f"{key}={_spelled(value)}" not in honoured:
            refused.append(f"{key}: {_spelled(value)}")
    return refused
