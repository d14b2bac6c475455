"""Small builders for planner tests: alerts, identities and inline playbooks."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stanch.inventory import YamlInventory
from stanch.models import Alert, IdentityContext, IdentityKind, IdentityRef, Level
from stanch.playbook import Playbook, load_playbooks

DEFAULT_PLAYBOOKS = Path("playbooks")
DEFAULT_INVENTORY = [Path("inventory"), Path("examples/inventory")]


def alert(category: str, severity: str = "high", confidence: str = "high", *,
          source: str = "generic", raw: dict[str, Any] | None = None,
          mentions: list[dict[str, Any]] | None = None, key: str = "k1") -> Alert:
    return Alert(
        id=Alert.make_id(source, key), source=source, source_alert_id=key, dedup_key=key,
        category=category, severity=Level(severity), confidence=Level(confidence),
        mentions=mentions or [], received_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        raw=raw or {},
    )


def identity(id: str = "sa-x", kind: str = "service_account", **facts: Any) -> IdentityContext:
    return IdentityContext(
        ref=IdentityRef(provider="mock", id=id, kind=IdentityKind(kind)), **facts
    )


def playbook(**fields: Any) -> Playbook:
    base: dict[str, Any] = {
        "name": "pb",
        "match": {"categories": ["anomalous_api_use"]},
        "rules": [{"when": {"severity": "medium"}, "up_to": "revoke"}],
        "ladder": [{"action": "notify", "notify": ["owner"]}],
        "owner_fallback": ["iam-admins"],
    }
    base.update(fields)
    return Playbook.model_validate(base)


def defaults() -> list[Playbook]:
    return load_playbooks([DEFAULT_PLAYBOOKS])


def demo_inventory() -> YamlInventory:
    return YamlInventory.from_paths(DEFAULT_INVENTORY)
