"""``POST /v1/alerts/{source}``: authenticate, normalize, audit, resolve, contain.

Nothing a SIEM sends is lost: refusals are answered with a reason and audited; payloads
that authenticate but do not normalize go to the dead-letter store; alerts naming no
known identity are accepted and audited as unresolved.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError

from stanch.api.contract import SOURCE_SCHEMES
from stanch.api.decisions import update_failure
from stanch.api.deliveries import (
    REMEMBERED_AFTER_DISPATCH,
    delivery_key,
    recall,
    remember,
    repeated,
)
from stanch.api.problems import problem_response, problem_responses
from stanch.api.refused_webhooks import RefusalTally
from stanch.audit import AuditStore
from stanch.dispatch import Dispatcher
from stanch.ingest import IngestError, PayloadTooLarge, receive
from stanch.ingest.registry import SOURCES
from stanch.inventory import Inventory
from stanch.logging import get_logger
from stanch.metrics import CONTAINMENTS
from stanch.models import Alert, AuditEvent, AuditType, IdentityContext

router = APIRouter(tags=["alerts"])
log = get_logger("stanch.api.alerts")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes; the limit is {limit} "
                              f"(api.max_body_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes (api.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _audit_event(type_: AuditType, *, actor: str, reason: str | None = None,
                 subject: str | None = None, alert_ids: list[str] | None = None,
                 data: dict[str, Any] | None = None, dedup_key: str | None = None,
                 workflow_id: str | None = None) -> AuditEvent:
    return AuditEvent(type=type_, at=datetime.now(UTC), actor=actor, reason=reason,
                      subject=subject, alert_ids=alert_ids or [], data=data or {},
                      dedup_key=dedup_key, workflow_id=workflow_id)


class Containment(BaseModel):
    workflow_id: str
    identity: str = Field(description="Identity key `provider:id`.")
    deduplicated: bool
    playbook: str | None = None
    queued: list[str] = Field(default_factory=list, description="Steps this alert queued.")


class Unresolved(BaseModel):
    name: str
    name_type: str
    reason: str


class AlertOutcome(BaseModel):
    alert_id: str
    source_alert_id: str
    containments: list[Containment]
    unresolved: list[Unresolved]


class AlertAccepted(BaseModel):
    alert_id: str | None = Field(description="The first alert's id (a delivery may carry "
                                             "several); null when it carried none.")
    workflow_id: str | None = Field(description="The first containment's workflow id.")
    deduplicated: bool = Field(description="True when every containment had seen it before.")
    alerts: list[AlertOutcome]


_WEBHOOK_DOC: dict[str, Any] = {
    "security": [{name: []} for name in SOURCE_SCHEMES],
    "parameters": [
        {"name": "webhook-id", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "Standard Webhooks: the delivery id (replays are refused)."},
        {"name": "webhook-timestamp", "in": "header", "required": False,
         "schema": {"type": "string"},
         "description": "Standard Webhooks: Unix seconds; must lie in the replay window."},
    ],
    "requestBody": {
        "required": True,
        "description": "The source's own JSON document, as it sends it. Signatures are "
                       "verified over these raw bytes; then the source's normalizer reads "
                       "it. Text must be valid Unicode without NUL.",
        "content": {"application/json": {"schema": {}}},
    },
}


@router.post("/v1/alerts/{source}", status_code=202, response_model=AlertAccepted,
             openapi_extra=_WEBHOOK_DOC, responses={
                 202: {"description": "Received and audited; containment started or joined "
                                      "(or deduplicated)."},
                 **problem_responses(
                     s401="Missing or bad credentials for this source (the reason says "
                          "which, never the secret); a source with none configured.",
                     s404="No such source.",
                     s413="The body is larger than `api.max_body_bytes`.",
                     s422="The body is not JSON Stanch can read, or it does not normalize "
                          "(kept as a dead letter); the reason names the JSON path.",
                     s503="Received and audited, but containment could not start now "
                          "(`Retry-After`); a retry is deduplicated.")})
async def post_alert(source: str, request: Request) -> JSONResponse:
    settings = request.app.state.settings
    now = datetime.now(UTC)
    try:
        body = await _read_body(request, settings.api.max_body_bytes)
        alerts = await receive(
            source, headers=request.headers, query=request.query_params, body=body,
            settings=settings, now=now, dead_letters=request.app.state.dead_letters,
            replay_cache=REMEMBERED_AFTER_DISPATCH,
        )
    except IngestError as err:
        # Counted and logged in receive(); audited once a minute per source and reason.
        tally: RefusalTally = request.app.state.refused_webhooks
        tally.note(source=source if source in SOURCES else "unknown", code=err.code,
                   status=err.status, now=now)
        return problem_response(err.status, err.reason, code=err.code)

    delivery = delivery_key(source, request.headers, body, settings)
    prior = await recall(request, [delivery] if delivery else [], now)
    if prior is not None:
        log.info("alert.delivery_repeated", source=source)
        return JSONResponse(repeated(prior), status_code=202)
    try:
        results = [await _contain(request, alert, now) for alert in alerts]
    except (RPCError, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError,
            OSError, RuntimeError) as err:
        # Received and audited; the containment could not be started now. A 503 makes the
        # SIEM retry, and the retry is deduplicated everywhere up to this point.
        _, kind, reason = update_failure(err)
        log.warning("alert.dispatch_failed", source=source, error=kind, reason=reason)
        return problem_response(503, reason, code="containment_unavailable",
                                headers={"Retry-After": "5"})
    first = results[0] if results else {}
    containments = [c for r in results for c in r["containments"]]
    answer = {
        "alert_id": first.get("alert_id"),
        "workflow_id": containments[0]["workflow_id"] if containments else None,
        "deduplicated": bool(containments) and all(c["deduplicated"] for c in containments),
        "alerts": results,
    }
    if delivery:
        await remember(request, [delivery], answer, now)
    return JSONResponse(answer, status_code=202)


async def _contain(request: Request, alert: Alert, now: datetime) -> dict[str, Any]:
    with structlog.contextvars.bound_contextvars(alert_id=alert.id, source=alert.source):
        key = f"received:{alert.id}"
        # The received record's dedup key is this same key, so it is appended beside the
        # recall: for a repeat the store answers with the first record and adds nothing.
        received = asyncio.ensure_future(_audit_received(request, alert))
        prior = await recall(request, [key], now)
        await received
        if prior is not None:  # contained before, even if that containment is closed
            CONTAINMENTS.labels("deduplicated").inc()
            return repeated(prior)
        result = await _contain_bound(request, alert)
        if result["containments"]:
            await remember(request, [key], result, now)
        return result


async def _audit_received(request: Request, alert: Alert) -> None:
    audit: AuditStore = request.app.state.audit
    await asyncio.to_thread(audit.append, _audit_event(
        AuditType.alert_received, actor=f"source:{alert.source}", alert_ids=[alert.id],
        reason=alert.title, dedup_key=f"received:{alert.id}", data={
            "source": alert.source, "source_alert_id": alert.source_alert_id,
            "category": alert.category.value, "severity": alert.severity.value,
            "confidence": alert.confidence.value,
            "mentions": [m.model_dump(mode="json") for m in alert.mentions],
            "raw": alert.raw}))


async def _contain_bound(request: Request, alert: Alert) -> dict[str, Any]:
    """The alert is audited (``received``); resolve whom it names, start or join each."""
    audit: AuditStore = request.app.state.audit
    inventory: Inventory = request.app.state.inventory
    dispatcher: Dispatcher = request.app.state.dispatcher
    identities: dict[str, IdentityContext] = {}
    unresolved: list[dict[str, str]] = []
    for mention in alert.mentions:
        ctx = inventory.resolve(mention, alert.source)
        if ctx is None:
            unresolved.append({"name": mention.name, "name_type": mention.name_type.value,
                               "reason": "not in the identity inventory"})
        else:
            identities.setdefault(ctx.ref.key, ctx)
    if not alert.mentions:
        unresolved.append({"name": "", "name_type": "none",
                           "reason": "the alert names no identity"})
    for u in unresolved:
        await asyncio.to_thread(audit.append, _audit_event(
            AuditType.identity_unresolved, actor="stanch", alert_ids=[alert.id],
            reason=u["reason"], data={"name": u["name"], "name_type": u["name_type"],
                                      "source": alert.source},
            dedup_key=f"unresolved:{alert.id}:{u['name_type']}:{u['name']}"))
        log.info("identity.unresolved", alert_id=alert.id, source=alert.source,
                 name_type=u["name_type"], reason=u["reason"])

    containments = []
    for key in sorted(identities):
        ctx = identities[key]
        result = await dispatcher.dispatch(alert, ctx)
        CONTAINMENTS.labels("deduplicated" if result.deduplicated else "dispatched").inc()
        containments.append({
            "workflow_id": result.workflow_id, "identity": key,
            "deduplicated": result.deduplicated, "playbook": result.playbook,
            "queued": result.queued,
        })
        log.info("alert.dispatched", alert_id=alert.id, workflow_id=result.workflow_id,
                 deduplicated=result.deduplicated, playbook=result.playbook)
    return {"alert_id": alert.id, "source_alert_id": alert.source_alert_id,
            "containments": containments, "unresolved": unresolved}
