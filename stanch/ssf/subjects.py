"""How Shared Signals names an identity (RFC 9493 subject identifiers).

Kept apart from the transmitter: the containment workflow computes a step's subject when it
acts (it is pure), and the worker's emitter reads it back from the audit record.
"""

from __future__ import annotations

from typing import Any

from stanch.models import IdentityContext


def subject_of(ctx: IdentityContext | None) -> dict[str, Any] | None:
    """``iss_sub`` when the inventory records the IdP's issuer and subject (attributes
    ``oidc_issuer`` and ``oidc_subject``), else the first email address."""
    if ctx is None:
        return None
    iss, sub = ctx.attributes.get("oidc_issuer"), ctx.attributes.get("oidc_subject")
    if iss and sub:
        return {"format": "iss_sub", "iss": iss, "sub": sub}
    email = next((a for a in ctx.aliases if "@" in a and not a.startswith("arn:")), None)
    return {"format": "email", "email": email} if email else None


def subject_key(sub: Any) -> str | None:
    """A comparable key for an email or iss_sub subject (emails compare case-blind)."""
    if not isinstance(sub, dict):
        return None
    if sub.get("format") == "email" and isinstance(sub.get("email"), str):
        return "email:" + sub["email"].lower()
    if sub.get("format") == "iss_sub":
        return f"iss_sub:{sub.get('iss')}\x00{sub.get('sub')}"
    return None
