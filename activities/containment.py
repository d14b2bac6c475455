"""Containment activities: act on an identity provider, exactly once in effect, audited.

Every action writes an *intent* record (with the before-snapshot) before touching the
provider and a *result* record after, both keyed by ``(action_id, phase)`` so a retried
activity never duplicates them. An intent with no result is "in doubt" (``stanch audit
doubts``). The before-snapshot in the intent is what makes a retry after a crash honest:
if the first attempt changed the provider and died before recording it, the retry finds the
provider "already" contained and still knows, from the intent, what it was before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.providers.base import (
    FRESH_SNAPSHOT,
    IdentityProvider,
    PermanentProviderError,
    ProviderError,
    apply,
)
from activities.providers.registry import ProviderPool, UnknownProvider
from stanch.audit import AuditStore
from stanch.config import Settings
from stanch.logging import get_logger
from stanch.metrics import (
    CONTAINMENT_ACTIONS,
    PROVIDER_CALLS,
    PROVIDER_ERRORS,
    TIME_TO_CONTAIN,
)
from stanch.models import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    AuditEvent,
    AuditRecord,
    AuditType,
)
from workflows.containment_types import ApprovalRequestInput

log = get_logger("stanch.activities")

PERMANENT_ERROR_TYPE = "PermanentProviderError"
TRANSIENT_ERROR_TYPE = "TransientProviderError"


def _now() -> datetime:
    return datetime.now(UTC)


def _raise_for(err: ProviderError) -> None:
    """Translate a provider error into what Temporal should do next."""
    details = {"provider": err.provider, "status": err.status, "code": err.code}
    if isinstance(err, PermanentProviderError) or not err.retryable:
        raise ApplicationError(str(err), details, type=PERMANENT_ERROR_TYPE,
                               non_retryable=True) from err
    delay = None
    if err.retry_after is not None:
        from datetime import timedelta

        delay = timedelta(seconds=max(0.0, min(err.retry_after, 300.0)))
    raise ApplicationError(str(err), details, type=TRANSIENT_ERROR_TYPE,
                           next_retry_delay=delay) from err


def _count(req: ActionRequest, status: str) -> None:
    CONTAINMENT_ACTIONS.labels(req.action.value, str(req.action.rung), status).inc()


def _drop(task: asyncio.Future[Any]) -> None:
    """Cancel a read nobody needs; whatever it ends with is retrieved, not logged."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


HEARTBEAT_EVERY = 1.0


@asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the action runs, so a worker that dies mid-action is noticed in
    seconds (the workflow's heartbeat timeout), not at the end of start-to-close."""

    async def beat() -> None:
        while True:
            # Sleep first: most actions finish within a second and need no heartbeat RPC.
            await asyncio.sleep(HEARTBEAT_EVERY)
            activity.heartbeat()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class ContainmentActivities:
    """Activities bound to one worker's settings, audit store and provider pool."""

    def __init__(self, settings: Settings, audit: AuditStore,
                 providers: ProviderPool | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self.providers = providers or ProviderPool(settings)

    def _provider(self, name: str) -> IdentityProvider:
        try:
            return self.providers.get(name)
        except UnknownProvider as err:
            raise ApplicationError(str(err), type="UnknownProvider", non_retryable=True) from err

    async def _audit(self, event: AuditEvent) -> int:
        record = await asyncio.to_thread(self.audit.append, event)
        return record.seq

    def _event(self, req: ActionRequest, type_: AuditType, phase: str | None,
               data: dict[str, Any], reason: str | None = None) -> AuditEvent:
        return AuditEvent(
            type=type_,
            at=_now(),
            actor=req.actor,
            subject=req.identity.key,
            workflow_id=req.workflow_id,
            alert_ids=req.alert_ids,
            action_id=req.action_id,
            phase=phase,
            reason=reason if reason is not None else req.reason,
            ticket=req.ticket,
            data=data,
            dedup_key=f"{req.action_id}:{phase}" if phase else None,
        )

    @activity.defn(name="apply_action")
    async def apply_action(self, req: ActionRequest) -> ActionResult:
        with structlog.contextvars.bound_contextvars(
                workflow_id=req.workflow_id, action_id=req.action_id,
                alert_ids=req.alert_ids):
            async with _heartbeating():
                return await self._apply_action(req)

    async def _prior_intent(self, provider: IdentityProvider, req: ActionRequest
                            ) -> tuple[AuditRecord | None, asyncio.Future[dict[str, Any]] | None]:
        """A retry's intent record, if any; on a first attempt also the before-snapshot,
        read beside that lookup (both are reads: the snapshot is only used when there is
        no intent yet, and is dropped otherwise)."""
        find = asyncio.to_thread(self.audit.find, f"{req.action_id}:intent")
        if activity.info().attempt > 1:
            return await find, None
        snapshot = asyncio.ensure_future(provider.snapshot(req.identity))
        try:
            prior = await find
        except BaseException:
            _drop(snapshot)
            raise
        if prior is not None:
            _drop(snapshot)
            return prior, None
        return None, snapshot

    async def _apply_action(self, req: ActionRequest) -> ActionResult:
        provider = self._provider(req.identity.provider)
        # Intent first, with the before-snapshot: evidence before acting (NIST 800-61 RS.MI).
        prior, reading = await self._prior_intent(provider, req)
        params = dict(req.params)
        if prior is not None and prior.data.get("snapshot"):
            # A retry: let the adapter plan from the state before the first attempt, so the
            # result carries the true before-state and undo even if attempt 1 wrote.
            params["_snapshot"] = prior.data["snapshot"]
        if prior is None:
            try:
                snapshot = await (reading if reading is not None
                                  else provider.snapshot(req.identity))
            except ProviderError as err:
                PROVIDER_ERRORS.labels(req.identity.provider, req.action.value,
                                       type(err).__name__).inc()
                if isinstance(err, PermanentProviderError):
                    await self._record_failure(req, err)
                    _count(req, "failed")
                _raise_for(err)
                raise  # unreachable: _raise_for always raises
            params[FRESH_SNAPSHOT] = snapshot
            prior = await asyncio.to_thread(
                self.audit.append,
                self._event(req, AuditType.action_intent, "intent", {
                    "action": req.action.value, "params": req.params,
                    "idempotency_key": req.action_id, "snapshot": snapshot,
                    "attempt": activity.info().attempt,
                }),
            )
        if FRESH_SNAPSHOT not in params:
            # Not the first attempt: an earlier one may have finished and recorded its
            # result (a result is only ever written after its intent); return that one.
            done = await asyncio.to_thread(self.audit.find, f"{req.action_id}:result")
            if done is not None and "result" in done.data:
                return ActionResult.model_validate(done.data["result"])

        PROVIDER_CALLS.labels(req.identity.provider, req.action.value).inc()
        try:
            result = await apply(provider, req.action, req.action_id, req.identity, params)
        except ProviderError as err:
            PROVIDER_ERRORS.labels(req.identity.provider, req.action.value,
                                   type(err).__name__).inc()
            if isinstance(err, PermanentProviderError) or not err.retryable:
                await self._record_failure(req, err)
                _count(req, "failed")
            log.warning("action.error", workflow_id=req.workflow_id, action=req.action.value,
                        action_id=req.action_id, error=str(err),
                        attempt=activity.info().attempt)
            _raise_for(err)
            raise

        again = activity.info().attempt > 1 or FRESH_SNAPSHOT not in params
        if again and result.status is ActionStatus.already:
            # Not the first run of this action id (a retry, or a reset workflow re-running
            # the step): "already" may be our own earlier write.
            result = self._reconcile_retry(result, prior.data.get("snapshot") or {})
        seq = await self._audit(self._event(req, AuditType.action_result, "result", {
            "status": result.status.value, "changed": result.changed,
            "before": result.before, "after": result.after,
            "undo": result.undo.model_dump(mode="json") if result.undo else None,
            "irreversible": result.irreversible, "provider_ref": result.provider_ref,
            "idempotency_key": req.action_id,
            "result": result.model_dump(mode="json"),
            **({"subject": req.subject} if req.subject else {}),
        }))
        log.info("action.applied", workflow_id=req.workflow_id, action=req.action.value,
                 action_id=req.action_id, status=result.status.value, changed=result.changed)
        _count(req, result.status.value)
        if result.status is ActionStatus.applied:
            await self._observe_time_to_contain(req, seq)
        return result

    async def _observe_time_to_contain(self, req: ActionRequest, result_seq: int) -> None:
        """Alert received by the API → this step applied, when it is the containment's first
        applied step. Both ends are in the audit chain, so no workflow input carries them."""
        def received_at() -> datetime | None:
            results = self.audit.query(workflow_id=req.workflow_id,
                                       types=[AuditType.action_result], limit=1000)
            first = next((r for r in results if r.data.get("status") == "applied"), None)
            if first is None or first.seq != result_seq:
                return None
            received = [self.audit.find(f"received:{a}") for a in req.alert_ids]
            times = [r.at for r in received if r is not None]
            return min(times) if times else None

        at = await asyncio.to_thread(received_at)
        if at is not None:
            TIME_TO_CONTAIN.observe(max(0.0, (_now() - at).total_seconds()))

    def _reconcile_retry(self, result: ActionResult, snapshot: dict[str, Any]) -> ActionResult:
        """A retry found the target state already reached: was it reached by *us*?

        When the provider changed between the intent's snapshot and now, an earlier attempt
        of this same action did it (nothing else holds this action id). Record it as
        applied, with the snapshot as the before-state, so undo still has what it needs.
        """
        if not snapshot or result.undo is not None:
            return result
        return result.model_copy(update={
            "message": (result.message + " (effect of an earlier attempt of this action; "
                        "before-state from the intent snapshot)").strip(),
            "before": result.before or snapshot,
        })

    async def _record_failure(self, req: ActionRequest, err: ProviderError) -> None:
        await self._audit(self._event(req, AuditType.action_failed, "result", {
            "error": str(err), "status": err.status, "code": err.code,
            "provider": err.provider, "retryable": False, "idempotency_key": req.action_id,
        }))

    @activity.defn(name="undo_action")
    async def undo_action(self, req: ActionRequest) -> ActionResult:
        """Undo ``req.params['original']`` (an ActionResult) from its captured before-state."""
        async with _heartbeating():
            return await self._undo_action(req)

    async def _undo_action(self, req: ActionRequest) -> ActionResult:
        original = ActionResult.model_validate(req.params["original"])
        provider = self._provider(original.identity.provider)
        # Evidence before undoing too: an undo may make the provider discard state (LDAP's
        # ppolicy clears the failed-login record when a lock is removed, failures recorded
        # while locked included), so the intent carries a snapshot as an action's does.
        try:
            snapshot = await provider.snapshot(original.identity)
        except ProviderError as err:
            if isinstance(err, PermanentProviderError) or not err.retryable:
                await self._record_failure(req, err)
            _raise_for(err)
            raise
        await self._audit(self._event(req, AuditType.revert, "intent", {
            "original_action_id": original.action_id, "action": original.action.value,
            "undo": original.undo.model_dump(mode="json") if original.undo else None,
            "snapshot": snapshot,
        }))
        done = await asyncio.to_thread(self.audit.find, f"{req.action_id}:result")
        if done is not None and "result" in done.data:
            return ActionResult.model_validate(done.data["result"])
        PROVIDER_CALLS.labels(original.identity.provider, f"undo_{original.action.value}").inc()
        try:
            result = await provider.undo(req.action_id, original)
        except ProviderError as err:
            PROVIDER_ERRORS.labels(original.identity.provider,
                                   f"undo_{original.action.value}", type(err).__name__).inc()
            if isinstance(err, PermanentProviderError) or not err.retryable:
                await self._record_failure(req, err)
            _raise_for(err)
            raise
        await self._audit(self._event(req, AuditType.revert, "result", {
            "original_action_id": original.action_id, "status": result.status.value,
            "before": result.before, "after": result.after,
            "result": result.model_dump(mode="json"),
            **({"subject": req.subject} if req.subject else {}),
        }))
        return result

    @activity.defn(name="snapshot_identity")
    async def snapshot_identity(self, identity_key: str) -> dict[str, Any]:
        provider_name, _, ident = identity_key.partition(":")
        from stanch.models import IdentityKind, IdentityRef

        provider = self._provider(provider_name)
        try:
            return await provider.snapshot(
                IdentityRef(provider=provider_name, id=ident, kind=IdentityKind.user))
        except ProviderError as err:
            _raise_for(err)
            raise

    @activity.defn(name="request_approval")
    async def request_approval(self, inp: ApprovalRequestInput) -> dict[str, list[str]]:
        """A step parks on approval: who is in its approver groups now (as
        ``snapshot_approvers``), then the ``approval.requested`` record — one local activity
        instead of two. The record's dedup key comes from the workflow, so a retried attempt
        never writes it twice."""
        members = await self.snapshot_approvers(inp.groups) if inp.groups else {}
        await asyncio.to_thread(self.audit.append, inp.event)
        return members

    @activity.defn(name="snapshot_approvers")
    async def snapshot_approvers(self, groups: list[str]) -> dict[str, list[str]]:
        """Who is in each approver group *now*, from the configured principal directory.

        Groups the directory does not know are absent from the answer; for those the
        workflow trusts the verified groups claim of the deciding principal.
        """
        members: dict[str, set[str]] = {}
        for pid, p in self.settings.principals.items():
            for g in p.groups:
                members.setdefault(g, set()).add(pid)
        for tok in self.settings.api_tokens:
            for g in tok.groups:
                members.setdefault(g, set()).add(tok.principal)
        return {g: sorted(members[g]) for g in groups if g in members}
