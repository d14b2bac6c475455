"""Audit every authorization refusal on a state-changing endpoint: who, what, why.

A refused Temporal update leaves no workflow history and a refused role check never
reaches Temporal, so the API writes these records itself. Only *authenticated* callers are
audited one by one (a 401 is counted and logged, never chained: anyone could write those).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from fastapi import Request

from stanch.logging import get_logger
from stanch.metrics import REFUSALS
from stanch.models import AuditEvent, AuditType, Principal

log = get_logger("stanch.api.refusals")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WID = re.compile(r"(containment|elevation)-[0-9a-f]{24}")


def _kind_of(path: str) -> AuditType:
    decides = path.rstrip("/").endswith("/decisions") or path.rstrip("/").endswith("/ack")
    return AuditType.decision_refused if decides else AuditType.access_refused


async def audit_refusal(request: Request, principal: Principal, *, reason: str,
                        refusal: str, workflow_id: str | None = None) -> None:
    """One record per refused attempt; the route template (not the raw URL) names what."""
    route = request.scope.get("route")
    what = f"{request.method} {getattr(route, 'path', None) or request.url.path[:200]}"
    type_ = _kind_of(request.url.path)
    if workflow_id is not None and not _WID.fullmatch(workflow_id):
        workflow_id = None  # caller-chosen text never lands in the chain
    REFUSALS.labels(type_.value, refusal).inc()
    log.info("request.refused", principal=principal.id, what=what, refusal=refusal,
             workflow_id=workflow_id)
    event = AuditEvent(
        type=type_, at=datetime.now(UTC), actor=principal.id, workflow_id=workflow_id,
        reason=reason[:500],
        data={"what": what, "refusal": refusal, "channel": "api",
              "roles": [r.value for r in principal.roles], "groups": principal.groups[:50]})
    try:
        await asyncio.to_thread(request.app.state.audit.append, event)
    except Exception as err:  # the caller still gets its 403; the log keeps the refusal
        log.error("request.refused.audit_failed", error=type(err).__name__)
