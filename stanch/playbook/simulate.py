"""Everything ``simulate`` and ``test`` need around the pure planner: reading an alert file
(normalized, or raw through :mod:`stanch.ingest`) and resolving its identities.

No side effects beyond reading files: no provider, no Temporal, no audit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from stanch.inventory import Inventory
from stanch.models import Alert, IdentityContext, IdentityMention


class SimulationError(Exception):
    """The inputs of a simulation are unusable; the message says which and why."""


@dataclass(frozen=True)
class Resolution:
    """One identity an alert names: the mention it came from and what the inventory said."""

    mention: IdentityMention | None
    identity: IdentityContext | None


def read_alerts(
    path: Path, source: str | None = None, received_at: datetime | None = None
) -> list[Alert]:
    """Alerts from a JSON file: a normalized :class:`Alert` (or a list of them), or — with
    ``source`` — a raw payload of that source, normalized by ``stanch.ingest.normalize``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    from stanch.ssf.set import looks_like_compact, unverified

    if looks_like_compact(text):
        # A Shared Signals SET as a transmitter sends it (compact JWS). Offline, so its
        # signature is not checked; the ssf normalizer reads the claims.
        try:
            payload, source = unverified(text.strip()), "ssf"
        except Exception as exc:
            raise SimulationError(f"{path}: not a readable SET: {exc}") from None
    else:
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SimulationError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if source is None and isinstance(payload, dict) and isinstance(
                payload.get("events"), dict) and "jti" in payload and "iss" in payload:
            source = "ssf"  # a decoded SET
    if source is not None:
        normalize = _normalizer()
        when = received_at or datetime.now(UTC)
        try:
            return list(normalize(source, payload, when))
        except Exception as exc:  # the normalizer's own error is the useful message
            raise SimulationError(f"{path}: {source} payload not understood: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    alerts = []
    for i, item in enumerate(items):
        try:
            alerts.append(Alert.model_validate(item))
        except ValidationError as err:
            where = f"[{i}]" if isinstance(payload, list) else ""
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
                for e in err.errors()
            )
            raise SimulationError(
                f"{path}{where}: not a normalized alert ({problems}); for a raw source "
                "payload pass --source"
            ) from None
    return alerts


def _normalizer() -> Callable[[str, Any, datetime], list[Alert]]:
    try:
        from stanch.ingest import normalize
    except ImportError as exc:
        raise SimulationError(
            f"raw payloads need stanch.ingest.normalize, which is not available ({exc}); "
            "pass a normalized Alert JSON without --source instead"
        ) from None
    return normalize


def resolve_identities(
    alert: Alert, inventory: Inventory, identity_key: str | None = None
) -> list[Resolution]:
    """The identities to plan for: the one named by ``identity_key``, or every mention of
    the alert resolved against the inventory (unresolved ones kept, with ``identity=None``;
    the same identity named twice only once)."""
    if identity_key is not None:
        found = inventory.get(identity_key)
        if found is None:
            raise SimulationError(f"identity {identity_key} is not in the inventory")
        return [Resolution(mention=None, identity=found)]
    out: list[Resolution] = []
    seen: set[str] = set()
    for mention in alert.mentions:
        identity = inventory.resolve(mention, alert.source)
        if identity is not None:
            if identity.ref.key in seen:
                continue
            seen.add(identity.ref.key)
        out.append(Resolution(mention=mention, identity=identity))
    return out
