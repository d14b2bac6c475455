"""The one protocol every identity provider adapter implements.

Providers know nothing of Temporal. Each action does read → decide → write → verify and
returns an :class:`~stanch.models.ActionResult` carrying the captured before-state and how
to undo it. "Already in the target state" is success (``ActionStatus.already``).

Errors are types: :class:`TransientProviderError` (retry; maybe after ``retry_after``
seconds) and :class:`PermanentProviderError` (do not retry: a human must look).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from stanch.models import Action, ActionResult, IdentityRef


class ProviderError(Exception):
    """A provider call failed. ``status`` is the HTTP-like status when there is one."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.provider or "provider"]
        if self.status is not None:
            parts.append(str(self.status))
        if self.code:
            parts.append(self.code)
        return f"{' '.join(parts)}: {self.message}"


class TransientProviderError(ProviderError):
    """Rate limits, 5xx, timeouts: retry, after ``retry_after`` seconds when known."""

    retryable = True


class PermanentProviderError(ProviderError):
    """403, 404 not explained by "already done", invalid requests: stop and escalate."""

    retryable = False


@runtime_checkable
class IdentityProvider(Protocol):
    """One adapter per provider. Every method is safe to call twice."""

    name: str

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        """The identity's current state: groups/policies, sessions, credentials, status."""
        ...

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult: ...

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult: ...

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult: ...

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult: ...

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        """Reverse ``original`` from its captured before-state; verify; idempotent."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ScopeGrantingProvider(Protocol):
    """Optional: an adapter that can grant and revoke one scope for time-bound elevation.

    What a scope names is the adapter's (a group, a policy); see docs/elevation.md. Both
    methods read → decide → write → verify with the action credentials, and are idempotent:
    ``grant_scope`` returns True only when it added the scope (False: already held), and
    ``revoke_scope`` True only when it removed it (False: not held). The elevation
    activities use them when present (``activities/elevation.py``).
    """

    name: str

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        ...

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        ...

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        """Whether ``snapshot`` (from :meth:`IdentityProvider.snapshot`) holds ``scope``, with
        the scope spelled any way the adapter accepts (``group:NAME``, a cn, a name…).
        Pure: no provider call. Use it to tell a pre-existing grant from one's own."""
        ...


# A param the activity adds on an action's *first* attempt: the provider's ``snapshot()``
# taken just before the intent was recorded. No earlier attempt of this action id can have
# written (writes happen only after a recorded intent), so an adapter whose snapshot is its
# working state may plan from it instead of reading the identity again.
FRESH_SNAPSHOT = "_fresh_snapshot"


async def apply(provider: IdentityProvider, action: Action, action_id: str,
                identity: IdentityRef, params: dict[str, Any]) -> ActionResult:
    """Dispatch one ladder action to the provider method of the same name."""
    if action is Action.notify:
        raise ValueError("notify is not a provider action")
    method = getattr(provider, action.value)
    result: ActionResult = await method(action_id, identity, params)
    return result
