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

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stanch.models import CONTAINMENT_ACTIONS, Action, IdentityKind

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
    param_losses: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Extra losses when the named step parameter is "
        "set (e.g. Okta force_reauth with `grants`).")
    reason: str = Field(default="", description="Why unsupported, or a note for operators.")

    def losses(self, params: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """What is lost when the action runs with ``params``."""
        extra = [loss for name, more in sorted(self.param_losses.items())
                 if (params or {}).get(name) for loss in more]
        return tuple(dict.fromkeys([*self.loses, *extra]))

    def all_losses(self) -> tuple[str, ...]:
        """Everything the action may lose, with any parameters."""
        return tuple(dict.fromkeys(
            [*self.loses, *(x for more in self.param_losses.values() for x in more)]))

    @property
    def reversible(self) -> bool:
        return self.supported and not self.loses


def _unsupported(reason: str) -> ActionDeclaration:
    return ActionDeclaration(supported=False, reason=reason)


def _yes(**kw: object) -> ActionDeclaration:
    return ActionDeclaration(supported=True, **kw)  # type: ignore[arg-type]


# What can be lost, by id: a playbook accepts a loss by naming its id (`accept_loss`).
LOSSES: dict[str, str] = {
    "sessions": "sessions and tokens issued before the action: their holders sign in again",
    "oauth_grants": "OAuth consent grants the user gave to apps: the user consents again",
    "leases": "secret leases issued to the identity: they are revoked, not paused",
    "old_secret": "the previous password or secret: destroyed, not deactivated, so undo "
                  "cannot bring it back and a new one must be handed out",
    "failed_login_history": "the directory's failed-login record (ppolicy pwdFailureTime): "
                            "the password policy clears it when the password changes or a lock "
                            "is removed; Stanch "
                            "captures it into the audit record before acting",
    "assignment_ids": "app role assignment ids and creation times: undo re-creates the "
                      "assignments, and Graph gives them new ids",
}

_WHOLE = "revokes the whole identity: a step naming single credentials is refused"
_GROUPS = frozenset({"groups", "remove_groups", "only_new_grants", "new_grants"})
_TARGET = frozenset({"target", "credentials"})
_IDENTITY = frozenset({"target=identity"})  # a credential target is refused (_WHOLE)


def _rotates(handles: str, *native: str) -> frozenset[str]:
    """Rotate params of an adapter that rotates one kind of credential (``credential`` of
    another kind is refused by the adapter, so by the planner too)."""
    return frozenset({f"credential={handles}", "credential=all", "credentials", *native})


# adapter type → action → declaration. An action missing from an adapter's table is
# unsupported there. Each entry says what the adapter in activities/providers/ really does.
DECLARATIONS: dict[str, dict[Action, ActionDeclaration]] = {
    "mock": {
        Action.reduce_scope: _yes(
            params=_GROUPS,
            changes=("removes privileged group memberships (or the groups named)",),
            undo_restores=("the memberships, each with its privileged flag",)),
        Action.force_reauth: _yes(
            params=frozenset({"refresh_tokens"}),
            changes=("revokes every session",), loses=("sessions",)),
        Action.rotate: _yes(
            params=frozenset({"credential", "credential_id", "credential_type",
                              "credentials"}),
            changes=("issues a new credential and deactivates the old one (never deletes); at "
                     "the per-type limit only deactivates it",),
            undo_restores=("the old credential, active again", "no new credential (deleted)")),
        Action.revoke: _yes(
            params=_TARGET,
            changes=("disables the identity and deactivates its active credentials; with "
                     "named credentials, deactivates only those",),
            undo_restores=("the identity's status", "exactly the credentials it deactivated, "
                                                    "active again")),
    },
    "aws_iam": {
        Action.reduce_scope: _yes(
            kinds=frozenset({IdentityKind.user, IdentityKind.access_key,
                             IdentityKind.service_account, IdentityKind.service_principal}),
            params=_GROUPS | {"policies", "detach_policies", "deny_all", "attach_deny_policy"},
            changes=("detaches managed policies and leaves IAM groups (those named; default "
                     "all but AWSDenyAll), or attaches AWSDenyAll with attach_deny_policy",),
            undo_restores=("the same managed policies and group memberships",
                           "no AWSDenyAll (detached when the step attached it)")),
        Action.force_reauth: _yes(
            kinds=frozenset({IdentityKind.user, IdentityKind.access_key,
                             IdentityKind.service_account, IdentityKind.service_principal}),
            params=frozenset({"refresh_tokens"}),
            changes=("puts the inline deny policy AWSRevokeOlderSessions "
                     "(aws:TokenIssueTime before now)",),
            loses=("sessions",),
            reason="the policy is never removed by undo: that would revive stolen sessions"),
        Action.rotate: _yes(
            kinds=frozenset({IdentityKind.user, IdentityKind.access_key,
                             IdentityKind.service_account}),
            params=_rotates("access_key", "access_key_id"),
            reason="IAM users only: a service account given by a bare name is an IAM role, "
                   "which has no keys; give its user ARN",
            changes=("creates a new access key and deactivates the named one (never deletes); "
                     "at the two-key limit only deactivates it and names the key a human "
                     "must delete before a new one can be issued",),
            undo_restores=("the old key in its earlier status", "no new key (deleted)")),
        Action.revoke: _yes(
            kinds=frozenset({IdentityKind.user, IdentityKind.access_key,
                             IdentityKind.service_account, IdentityKind.service_principal}),
            params=_TARGET,
            changes=("deactivates the named access keys; revoking the identity deactivates "
                     "every active key and attaches AWSDenyAll (blocks console and API; the "
                     "login profile is kept)",),
            undo_restores=("exactly those keys, active again", "no AWSDenyAll")),
    },
    "okta": {
        Action.reduce_scope: _yes(
            kinds=frozenset({IdentityKind.user}), params=_GROUPS,
            changes=("removes Okta-native group memberships (those named; default all)",),
            undo_restores=("the same group memberships",)),
        Action.force_reauth: _yes(
            kinds=frozenset({IdentityKind.user}),
            params=frozenset({"grants", "refresh_tokens"}),
            changes=("revokes sessions and OAuth tokens; with grants, consent grants too",),
            loses=("sessions",), param_losses={"grants": ("oauth_grants",)}),
        Action.rotate: _yes(
            kinds=frozenset({IdentityKind.oauth_app}),
            params=_rotates("client_secret", "secret_id"),
            changes=("adds a client secret and deactivates the old one; at the two-secret "
                     "limit only deactivates it (no secret is deleted)",),
            undo_restores=("the old secret, active again", "no new secret (deleted)")),
        Action.revoke: _yes(
            kinds=frozenset({IdentityKind.user}),
            changes=("suspends the user (not deactivate: that is destructive)",),
            undo_restores=("the user, unsuspended",), params=_IDENTITY, reason=_WHOLE),
    },
    "entra": {
        Action.reduce_scope: _yes(
            params=_GROUPS | {"app_roles", "drop_grants"},
            changes=("removes direct assigned-group memberships (dynamic groups are left) and "
                     "deletes app role assignments",),
            undo_restores=("the memberships", "the app role assignments (resource and role)"),
            loses=("assignment_ids",)),
        Action.force_reauth: _yes(
            kinds=frozenset({IdentityKind.user}), params=frozenset({"refresh_tokens"}),
            changes=("revokeSignInSessions: refresh tokens and session cookies invalidated",),
            loses=("sessions",)),
        Action.rotate: _yes(
            kinds=frozenset({IdentityKind.service_principal, IdentityKind.oauth_app}),
            params=_rotates("client_secret", "key_id"),
            changes=("addPassword, then removePassword of the old key (Graph cannot "
                     "deactivate one)",),
            loses=("old_secret",)),
        Action.revoke: _yes(
            changes=("accountEnabled=false on the user or service principal",),
            undo_restores=("accountEnabled=true",), params=_IDENTITY, reason=_WHOLE),
    },
    "scim": {
        Action.reduce_scope: _yes(
            params=_GROUPS,
            changes=("removes the user from groups (those named; default all)",),
            undo_restores=("the memberships with their attributes (display, type)",)),
        Action.revoke: _yes(
            changes=("sets the user active=false",), undo_restores=("active=true",),
            params=_IDENTITY, reason=_WHOLE),
        Action.force_reauth: _unsupported(
            "SCIM has no sessions: use the identity provider's own API"),
        Action.rotate: _unsupported(
            "SCIM cannot rotate credentials: use the identity provider's own API"),
    },
    "ldap": {
        Action.reduce_scope: _yes(
            params=_GROUPS,
            changes=("removes the DN from groupOfNames groups (those named; default all)",),
            undo_restores=("the memberships",)),
        Action.revoke: _yes(
            changes=("locks the account with pwdAccountLockedTime (ppolicy); the failed-login "
                     "record is captured into the before-state first",),
            undo_restores=("the account, unlocked",), params=_IDENTITY,
            loses=("failed_login_history",), reason=_WHOLE),
        Action.rotate: _yes(
            kinds=frozenset({IdentityKind.user, IdentityKind.service_account}),
            params=_rotates("password", "password_fingerprint") - {"credentials"},
            changes=("sets a new random password (RFC 3062 password modify); the failed-login "
                     "record is captured into the before-state first",),
            loses=("old_secret", "failed_login_history")),
        Action.force_reauth: _unsupported(
            "LDAP has no sessions to revoke: use the identity provider in front of it"),
    },
    "vault": {
        Action.reduce_scope: _yes(
            params=_GROUPS | {"policies", "detach_policies"},
            changes=("removes policies from the identity entity (those named; default all)",),
            undo_restores=("the policies (any added since are kept)",)),
        Action.force_reauth: _yes(
            params=frozenset({"lease_prefixes", "refresh_tokens"}),
            changes=("revokes the entity's tokens by accessor and its leases by prefix",),
            loses=("sessions", "leases")),
        Action.rotate: _yes(
            params=_rotates("secret_id", "secret_id_accessor"),
            changes=("generates a new AppRole secret-id and destroys the old one (secret-ids "
                     "cannot be deactivated)",),
            loses=("old_secret",)),
        Action.revoke: _yes(
            changes=("sets the identity entity disabled=true",),
            undo_restores=("disabled=false",), params=_IDENTITY, reason=_WHOLE),
    },
}


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


def adapters_for(action: Action, kinds: Sequence[IdentityKind] = ()) -> list[str]:
    """Adapter types where ``action`` exists for any of ``kinds`` (empty: any kind)."""
    return [t for t in sorted(DECLARATIONS)
            if (not kinds and supports(t, action))
            or any(supports(t, action, k) for k in kinds)]


def possible_losses(action: Action, kinds: Sequence[IdentityKind] = (),
                    params: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Loss id → adapter types on which ``action`` with ``params`` may lose it."""
    out: dict[str, list[str]] = {}
    for t in adapters_for(action, kinds):
        for loss in declaration(t, action).losses(params):
            out.setdefault(loss, []).append(t)
    return out


def adapter_type(provider: str, configured: Mapping[str, str] | None = None) -> str | None:
    """The adapter type behind provider name ``provider``: from the configured providers
    (name → type), else the name itself when it is an adapter type; None when unknown."""
    if configured and provider in configured:
        return configured[provider]
    return provider if provider in DECLARATIONS else None


def reversibility_table() -> str:
    """Markdown: action by adapter → what changes, what undo restores, what is lost. The
    section of docs/providers.md between the markers is this, generated
    (``python scripts/providers_doc.py``)."""
    rows = ["| action | provider | changes | undo restores | lost (rollback cannot restore) |",
            "| --- | --- | --- | --- | --- |"]
    for action in CONTAINMENT_ACTIONS:
        for adapter in sorted(DECLARATIONS):
            d = declaration(adapter, action)
            if not d.supported:
                rows.append(f"| {action.value} | {adapter} | — not supported: {d.reason} | | |")
                continue
            lost = list(d.loses) + [f"{x} (with `{p}`)" for p, more in
                                    sorted(d.param_losses.items()) for x in more]
            kinds = "" if d.kinds == ALL_KINDS else \
                " (" + ", ".join(sorted(k.value for k in d.kinds)) + ")"
            note = f" ({d.reason})" if d.reason else ""
            rows.append(" | ".join([
                f"| {action.value}", adapter + kinds, "; ".join(d.changes) + note,
                "; ".join(d.undo_restores) or "nothing",
                ", ".join(lost) or "nothing"]) + " |")
    legend = [f"- `{k}`: {v}" for k, v in sorted(LOSSES.items())]
    return "\n".join([*rows, "", "Losses:", "", *legend]) + "\n"


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
