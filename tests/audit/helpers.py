"""Shared test helpers for the audit suite."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from stanch.models import AuditEvent, AuditType

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

Tamper = Callable[..., None]


def event(n: int = 0, **kw: Any) -> AuditEvent:
    base: dict[str, Any] = {
        "type": AuditType.alert_received,
        "at": T0 + timedelta(seconds=n),
        "actor": "splunk",
        "subject": f"mock:user-{n % 3}",
        "workflow_id": f"containment-wf{n % 2}",
        "alert_ids": [f"alert-{n}"],
        "reason": f"event {n}",
        "data": {"n": n},
    }
    base.update(kw)
    return AuditEvent(**base)



def pg_dsn_of(store: Any) -> str:
    """The DSN a PostgreSQL store was opened with (the session's own cluster)."""
    dsn: str = store._dsn
    return dsn
