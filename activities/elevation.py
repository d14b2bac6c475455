"""Elevation activities: reach a scope's ledger, grant and revoke a scope, review afterwards.

``acquire_scope_lease`` / ``release_scope_lease`` run for an ``ElevationWorkflow``: a workflow
cannot send an update, so these send it (update-with-start: the first lease creates the
ledger) and wait for the ledger's answer. ``grant_scope`` / ``revoke_scope`` run for the
ledger and touch the provider: intent (with the before-snapshot) and result are audited with
dedup keys, as for containment actions, so a retry neither writes twice nor forgets what
the principal held before.

Grants need an adapter that implements ``ScopeGrantingProvider`` (``grant_scope``,
``revoke_scope``, ``holds_scope``): every adapter in ``activities/providers`` does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities.containment import _raise_for
from activities.providers.base import IdentityProvider, ProviderError
from activities.providers.registry import ProviderPool, UnknownProvider
from stanch.audit import AuditStore
from stanch.config import Settings
from stanch.logging import get_logger
from stanch.models import (
    AuditEvent,
    AuditRecord,
    AuditType,
)
from workflows.elevation import ScopeLeaseWorkflow
from workflows.elevation_types import (
    AcquireInput,
    AcquireResult,
    GrantResult,
    LeaseRequest,
    LedgerInput,
    ReleaseInput,
    ReleaseResult,
    ReviewRequest,
    ReviewSummary,
    RevokeScopeResult,
    ScopeChangeRequest,
    lease_workflow_id,
)

log = get_logger("stanch.activities.elevation")

REVIEW_RECORDS_SHOWN = 50
_PAGE = 500
# Ledger update failures the elevation must not retry (the grant cannot happen).
_FINAL = {"LeaseReleased", "GrantFailed", "PermanentProviderError", "UnknownProvider",
          "NotSupported"}


def _now() -> datetime:
    return datetime.now(UTC)


def _scopes_of(snapshot: dict[str, Any]) -> set[str]:
    """Scope names an identity holds, from a provider snapshot (groups, roles, policies)."""
    out: set[str] = set()
    for key in ("groups", "roles", "attached_policies", "policies"):
        for item in snapshot.get(key) or []:
            name = item.get("name") if isinstance(item, dict) else item
            if isinstance(name, str):
                out.add(name)
    return out


class ElevationActivities:
    """Activities bound to one worker's settings, audit store and provider pool."""

    def __init__(self, settings: Settings, audit: AuditStore,
                 providers: ProviderPool | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self.providers = providers or ProviderPool(settings)

    # ------------------------------------------------------------------ the ledger
    @activity.defn(name="acquire_scope_lease")
    async def acquire_scope_lease(self, req: LeaseRequest) -> AcquireResult:
        result: AcquireResult = await self._ledger_update(
            req, ScopeLeaseWorkflow.acquire,
            AcquireInput(lease_id=req.lease_id, elevation_id=req.elevation_id,
                         expires_at=req.expires_at, actor=req.actor, reason=req.reason))
        return result

    @activity.defn(name="release_scope_lease")
    async def release_scope_lease(self, req: LeaseRequest) -> ReleaseResult:
        result: ReleaseResult = await self._ledger_update(
            req, ScopeLeaseWorkflow.release,
            ReleaseInput(lease_id=req.lease_id, actor=req.actor, reason=req.reason))
        return result

    async def _ledger_update(self, req: LeaseRequest, update: Any, arg: Any) -> Any:
        wid = lease_workflow_id(req.principal.key, req.scope, req.namespace)
        op = WithStartWorkflowOperation(
            ScopeLeaseWorkflow.run, LedgerInput(principal=req.principal, scope=req.scope),
            id=wid, task_queue=activity.info().task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        try:
            return await activity.client().execute_update_with_start_workflow(
                update, arg, start_workflow_operation=op)
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise ApplicationError(f"scope ledger {wid}: {message}", type=kind or "LedgerError",
                                   non_retryable=kind in _FINAL) from err

    # ------------------------------------------------------------------ the provider
    def _provider(self, name: str) -> IdentityProvider:
        try:
            return self.providers.get(name)
        except UnknownProvider as err:
            raise ApplicationError(str(err), type="UnknownProvider", non_retryable=True) from err

    def _event(self, req: ScopeChangeRequest, type_: AuditType, phase: str,
               data: dict[str, Any]) -> AuditEvent:
        return AuditEvent(type=type_, at=_now(), actor=req.actor, subject=req.principal.key,
                          workflow_id=req.ledger_id, action_id=req.action_id, phase=phase,
                          reason=req.reason, data={"scope": req.scope,
                                                   "lease_ids": req.lease_ids, **data},
                          dedup_key=f"{req.action_id}:{phase}")

    @activity.defn(name="grant_scope")
    async def grant_scope(self, req: ScopeChangeRequest) -> GrantResult:
        """Add the scope unless the principal already holds it (then it is pre-existing)."""
        ref = req.principal
        provider = self._provider(ref.provider)
        if not hasattr(provider, "grant_scope"):
            raise ApplicationError(f"provider {ref.provider!r} cannot grant scopes yet",
                                   type="NotSupported", non_retryable=True)
        done = await asyncio.to_thread(self.audit.find, f"{req.action_id}:result")
        if done is not None and "grant" in done.data:
            return GrantResult.model_validate(done.data["grant"])
        intent = await asyncio.to_thread(self.audit.find, f"{req.action_id}:intent")
        try:
            if intent is None:
                # Before-state first: a retry after our own write must still know the scope
                # was not there before, or it would call our grant "pre-existing".
                snapshot = await provider.snapshot(ref)
                intent = await asyncio.to_thread(self.audit.append, self._event(
                    req, AuditType.action_intent, "intent",
                    {"action": "elevation.grant_scope", "snapshot": snapshot}))
            snapshot = intent.data.get("snapshot") or {}
            before = _scopes_of(snapshot)
            # The adapter knows how its scopes are spelled (`group:NAME`, a DN, an ARN …);
            # a membership held before Stanch must be recognised, or its end would remove it.
            holds = getattr(provider, "holds_scope", None)
            held_before = bool(holds(snapshot, req.scope)) if holds else req.scope in before
            changed = False
            if not held_before:
                changed = bool(await provider.grant_scope(  # type: ignore[attr-defined]
                    req.action_id, ref, req.scope))
        except ProviderError as err:
            _raise_for(err)
            raise
        result = GrantResult(preexisting=held_before, changed=changed,
                             before_groups=sorted(before))
        await asyncio.to_thread(self.audit.append, self._event(
            req, AuditType.action_result, "result",
            {"action": "elevation.grant_scope", "grant": result.model_dump(mode="json")}))
        log.info("elevation.scope_granted", ledger=req.ledger_id, action_id=req.action_id,
                 preexisting=result.preexisting, changed=changed)
        return result

    @activity.defn(name="revoke_scope")
    async def revoke_scope(self, req: ScopeChangeRequest) -> RevokeScopeResult:
        """Remove the scope and end the principal's sessions, verified by the provider.

        Sessions go too: a token minted while the scope was held keeps it until it expires.
        """
        ref = req.principal
        provider = self._provider(ref.provider)
        await asyncio.to_thread(self.audit.append, self._event(
            req, AuditType.action_intent, "intent", {"action": "elevation.revoke_scope"}))
        try:
            removed = bool(await provider.revoke_scope(  # type: ignore[attr-defined]
                req.action_id, ref, req.scope))
            sessions = await provider.force_reauth(f"{req.action_id}-sessions", ref, {})
        except ProviderError as err:
            log.warning("elevation.revoke_error", ledger=req.ledger_id, action_id=req.action_id,
                        error=str(err), attempt=activity.info().attempt)
            _raise_for(err)
            raise
        revoked = sorted({s["id"] for s in sessions.before.get("sessions", [])}
                         - {s["id"] for s in sessions.after.get("sessions", [])})
        result = RevokeScopeResult(removed=removed, sessions_revoked=revoked)
        await asyncio.to_thread(self.audit.append, self._event(
            req, AuditType.action_result, "result",
            {"action": "elevation.revoke_scope", "revoke": result.model_dump(mode="json")}))
        log.info("elevation.scope_revoked", ledger=req.ledger_id, action_id=req.action_id,
                 removed=removed, sessions=len(revoked))
        return result

    # ------------------------------------------------------------------ review
    @activity.defn(name="elevation_review")
    async def elevation_review(self, req: ReviewRequest) -> ReviewSummary:
        """What was done under the elevation: records by the principal between grant and end."""
        actors = self._actors_of(req.principal.key)
        found: list[AuditRecord] = []
        after = 0
        while True:
            page = await asyncio.to_thread(self.audit.query, since=req.since, until=req.until,
                                           after_seq=after, limit=_PAGE)
            for r in page:
                if r.actor in actors and not self._own(r, req.elevation_id):
                    found.append(r)
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        by_type: dict[str, int] = {}
        for r in found:
            by_type[str(r.type)] = by_type.get(str(r.type), 0) + 1
        return ReviewSummary(
            since=req.since, until=req.until, actors=sorted(actors), count=len(found),
            by_type=by_type,
            records=[{"seq": r.seq, "type": str(r.type), "at": r.at.isoformat(),
                      "actor": r.actor, "subject": r.subject, "workflow_id": r.workflow_id,
                      "reason": r.reason} for r in found[:REVIEW_RECORDS_SHOWN]])

    def _actors_of(self, key: str) -> set[str]:
        """The principal as audit records name it: its key, its id, and the Stanch
        principals (people, tokens) configured as being that identity."""
        actors = {key, key.partition(":")[2]}
        actors |= {pid for pid, p in self.settings.principals.items() if key in p.identity_keys}
        actors |= {t.principal for t in self.settings.api_tokens if key in t.identity_keys}
        return actors

    @staticmethod
    def _own(record: AuditRecord, elevation_id: str) -> bool:
        wid = record.workflow_id or ""
        return wid == elevation_id or wid.startswith("scope-lease-")
