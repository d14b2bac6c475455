"""Event types: what an incoming CAEP/RISC event means, and what an applied action says.

Incoming events become alerts whose category, severity and confidence carry their weight,
so playbooks match them like any other source (``playbooks/shared-signals.yaml``):
credential-compromise is the strongest trigger, account-disabled next, a required
credential change asks for rotation, a lowered assurance level for re-authentication. The
others (session-revoked, credential-change, token-claims-change, identifier-changed) are
evidence: recorded and joined to the identity's containment, with no action of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from stanch.models import Action, Category, Level

PREFIX = "https://schemas.openid.net/secevent/"
CAEP = PREFIX + "caep/event-type/"
RISC = PREFIX + "risc/event-type/"
SSF = PREFIX + "ssf/event-type/"

SESSION_REVOKED = CAEP + "session-revoked"
CREDENTIAL_CHANGE = CAEP + "credential-change"
TOKEN_CLAIMS_CHANGE = CAEP + "token-claims-change"
ASSURANCE_LEVEL_CHANGE = CAEP + "assurance-level-change"
ACCOUNT_DISABLED = RISC + "account-disabled"
ACCOUNT_ENABLED = RISC + "account-enabled"
CREDENTIAL_COMPROMISE = RISC + "credential-compromise"
CREDENTIAL_CHANGE_REQUIRED = RISC + "account-credential-change-required"
IDENTIFIER_CHANGED = RISC + "identifier-changed"
VERIFICATION = SSF + "verification"
STREAM_UPDATED = SSF + "stream-updated"

CONTROL_EVENTS = frozenset({VERIFICATION, STREAM_UPDATED})


@dataclass(frozen=True)
class Meaning:
    """How an incoming event becomes an alert."""

    name: str
    category: Category
    severity: Level
    confidence: Level


_INCOMING: dict[str, Meaning] = {
    CREDENTIAL_COMPROMISE: Meaning("credential compromised", Category.leaked_secret,
                                   Level.critical, Level.critical),
    ACCOUNT_DISABLED: Meaning("account disabled by the identity provider",
                              Category.risky_sign_in, Level.critical, Level.high),
    CREDENTIAL_CHANGE_REQUIRED: Meaning("credential change required", Category.leaked_secret,
                                        Level.high, Level.high),
    ASSURANCE_LEVEL_CHANGE: Meaning("assurance level changed", Category.risky_sign_in,
                                    Level.medium, Level.medium),
    SESSION_REVOKED: Meaning("session revoked", Category.other, Level.info, Level.high),
    CREDENTIAL_CHANGE: Meaning("credential changed", Category.other, Level.info, Level.high),
    TOKEN_CLAIMS_CHANGE: Meaning("token claims changed", Category.other, Level.info,
                                 Level.high),
    IDENTIFIER_CHANGED: Meaning("identifier changed", Category.other, Level.info, Level.high),
    ACCOUNT_ENABLED: Meaning("account enabled", Category.other, Level.info, Level.high),
}

KNOWN_EVENTS = frozenset(_INCOMING) | CONTROL_EVENTS
"""Every event type Stanch accepts; anything else is refused (`invalid_request`)."""

ALERT_EVENTS = frozenset(_INCOMING)


def meaning(event_type: str, payload: dict[str, object]) -> Meaning:
    """The alert an incoming event makes. A *decrease* of assurance asks for
    re-authentication; an increase is only evidence."""
    m = _INCOMING[event_type]
    if event_type == ASSURANCE_LEVEL_CHANGE and payload.get("change_direction") != "decrease":
        return Meaning(m.name, Category.other, Level.info, m.confidence)
    if event_type == ACCOUNT_DISABLED and payload.get("reason") == "bulk-account":
        return Meaning(m.name, m.category, Level.high, m.confidence)
    return m


# What Stanch transmits after it applies, or undoes, an action.
OUTGOING: dict[Action, str] = {
    Action.force_reauth: SESSION_REVOKED,
    Action.rotate: CREDENTIAL_CHANGE,
    Action.revoke: ACCOUNT_DISABLED,
    Action.reduce_scope: TOKEN_CLAIMS_CHANGE,
}
OUTGOING_UNDO: dict[Action, str] = {
    Action.revoke: ACCOUNT_ENABLED,
    Action.rotate: CREDENTIAL_CHANGE,
    Action.reduce_scope: TOKEN_CLAIMS_CHANGE,
}
TRANSMITTED = frozenset(OUTGOING.values()) | frozenset(OUTGOING_UNDO.values())
