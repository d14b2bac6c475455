"""``GET /v1/audit`` (filtered, paged records) and ``GET /v1/audit/verify`` (chain check).

The app mounts this router with its authentication (viewer role) as a dependency; the
handlers only read ``request.app.state.audit`` (an AuditStore) and, for the checkpoint key,
``request.app.state.settings``. Store calls are blocking, so they run in the threadpool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from stanch.api.inputs import INT64_MAX, Text, Timestamp
from stanch.api.problems import problem_responses
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


_UNAVAILABLE = problem_responses(503, s503="The audit store is not configured.")


@router.get("/v1/audit", response_model=AuditPage, responses=_UNAVAILABLE)
async def list_audit(
    request: Request,
    identity: Annotated[Text | None, Query(description="Subject identity key `provider:id`.")]
    = None,
    workflow_id: Annotated[Text | None, Query()] = None,
    types: Annotated[list[AuditType] | None, Query(
        alias="type", description="Audit type; repeat the parameter for several, e.g. "
                                  "`type=action.result&type=action.failed`.")] = None,
    alert_id: Annotated[Text | None, Query()] = None,
    since: Annotated[Timestamp | None, Query(
        description="Inclusive lower bound on `at` (RFC 3339, with its offset).")] = None,
    until: Annotated[Timestamp | None, Query(
        description="Exclusive upper bound on `at` (RFC 3339, with its offset).")] = None,
    after_seq: Annotated[int, Query(ge=0, le=INT64_MAX, description="Only records after "
                                    "this sequence number.")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = 100,
) -> AuditPage:
    store = _store(request)
    records = await run_in_threadpool(
        store.query, subject=identity, workflow_id=workflow_id, types=types or None,
        since=since,
        until=until, after_seq=after_seq, limit=limit, alert_id=alert_id,
    )
    return AuditPage(records=records,
                     next_after_seq=records[-1].seq if records else after_seq)


@router.get("/v1/audit/verify", response_model=VerifyReport, responses=_UNAVAILABLE)
async def verify_audit(request: Request) -> VerifyReport:
    """Walk the whole chain; with the configured key, check the signed checkpoints too.
    Returns 200 with ``ok: false`` and the first broken record when it is not intact."""
    settings = getattr(request.app.state, "settings", None)
    key = checkpoint_key(settings) if isinstance(settings, Settings) else None
    return await run_in_threadpool(_store(request).verify, key)
