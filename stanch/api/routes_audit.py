"""``GET /v1/audit`` (filtered, paged records) and ``GET /v1/audit/verify`` (chain check).

The app mounts this router with its authentication (viewer role) as a dependency; the
handlers only read ``request.app.state.audit`` (an AuditStore) and, for the checkpoint key,
``request.app.state.settings``. Store calls are blocking, so they run in the threadpool.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from stanch.audit import AuditStore, VerifyReport, checkpoint_key
from stanch.config import Settings
from stanch.models import AuditRecord, AuditType

router = APIRouter(tags=["audit"])

MAX_LIMIT = 1000


class AuditPage(BaseModel):
    records: list[AuditRecord]
    next_after_seq: int = Field(
        description="Pass as `after_seq` for the next page (or to poll for newer records)."
    )


def _store(request: Request) -> AuditStore:
    store: AuditStore | None = getattr(request.app.state, "audit", None)
    if store is None:
        raise HTTPException(status_code=503, detail="audit store is not configured")
    return store


def _types(raw: list[str] | None) -> list[AuditType] | None:
    if not raw:
        return None
    names = [n.strip() for item in raw for n in item.split(",") if n.strip()]
    try:
        return [AuditType(n) for n in names]
    except ValueError:
        bad = next(n for n in names if n not in AuditType._value2member_map_)
        raise HTTPException(
            status_code=422,
            detail=f"type: unknown audit type {bad!r}; known: "
                   f"{', '.join(t.value for t in AuditType)}",
        ) from None


@router.get("/v1/audit", response_model=AuditPage)
async def list_audit(
    request: Request,
    identity: Annotated[str | None, Query(description="Subject identity key `provider:id`.")]
    = None,
    workflow_id: str | None = None,
    type_names: Annotated[list[str] | None, Query(
        alias="type",
        description="Audit type(s), repeated or comma-separated, e.g. `action.result`.")]
    = None,
    alert_id: str | None = None,
    since: Annotated[datetime | None, Query(description="Inclusive lower bound on `at`.")]
    = None,
    until: Annotated[datetime | None, Query(description="Exclusive upper bound on `at`.")]
    = None,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
) -> AuditPage:
    types = _types(type_names)
    store = _store(request)
    records = await run_in_threadpool(
        store.query, subject=identity, workflow_id=workflow_id, types=types, since=since,
        until=until, after_seq=after_seq, limit=limit, alert_id=alert_id,
    )
    return AuditPage(records=records,
                     next_after_seq=records[-1].seq if records else after_seq)


@router.get("/v1/audit/verify", response_model=VerifyReport)
async def verify_audit(request: Request) -> VerifyReport:
    """Walk the whole chain; with the configured key, check the signed checkpoints too.
    Returns 200 with ``ok: false`` and the first broken record when it is not intact."""
    settings = getattr(request.app.state, "settings", None)
    key = checkpoint_key(settings) if isinstance(settings, Settings) else None
    return await run_in_threadpool(_store(request).verify, key)
