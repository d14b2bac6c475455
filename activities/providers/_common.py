"""What every adapter shares: building results, dispatching undo, remembering finished
revocations, and handing a freshly issued secret to its owner without logging it."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from activities.providers.base import PermanentProviderError
from stanch.models import Action, ActionResult, ActionStatus, IdentityRef, UndoSpec

UndoHandler = Callable[[str, ActionResult], Awaitable[ActionResult]]


def action_result(action_id: str, action: Action, identity: IdentityRef, *, changed: bool,
                  before: dict[str, Any], after: dict[str, Any],
                  undo: UndoSpec | None = None, irreversible: bool = False,
                  message: str = "", provider_ref: str | None = None) -> ActionResult:
    """``applied`` when the provider changed, ``already`` when it was in the target state.

    An ``already`` result carries no undo: undoing a no-op must not reverse what an earlier
    action changed.
    """
    return ActionResult(
        action_id=action_id, action=action, identity=identity,
        status=ActionStatus.applied if changed else ActionStatus.already,
        changed=changed, before=before, after=after,
        undo=undo if changed else None, irreversible=irreversible,
        provider_ref=provider_ref, message=message,
    )


def undo_result(action_id: str, original: ActionResult, *, changed: bool,
                before: dict[str, Any], after: dict[str, Any], message: str = "") -> ActionResult:
    return ActionResult(
        action_id=action_id, action=original.action, identity=original.identity,
        status=ActionStatus.undone if changed else ActionStatus.already,
        changed=changed, before=before, after=after, message=message,
    )


async def dispatch_undo(provider: str, action_id: str, original: ActionResult,
                        handlers: Mapping[str, UndoHandler]) -> ActionResult:
    """Run the handler named by ``original.undo.params['op']``.

    Irreversible results refuse with a permanent error; results that changed nothing undo to
    ``already``.
    """
    if original.undo is None:
        if original.irreversible and original.changed:
            raise PermanentProviderError(
                f"{original.action.value} on {original.identity.id} is irreversible: "
                f"{original.message or 'no undo exists'}",
                provider=provider, code="Irreversible",
            )
        return undo_result(action_id, original, changed=False, before=original.after,
                           after=original.after, message="nothing to undo")
    op = str(original.undo.params.get("op", ""))
    handler = handlers.get(op)
    if handler is None:
        raise PermanentProviderError(f"unknown undo operation {op!r}", provider=provider,
                                     code="UndoUnknown")
    return await handler(action_id, original)


class DoneActions:
    """Action ids of stateless revocations this process finished (sessions leave no state
    to read back), so a retried activity reports ``already`` instead of acting twice."""

    def __init__(self, size: int = 4096) -> None:
        self._done: OrderedDict[str, ActionResult] = OrderedDict()
        self._size = size

    def get(self, action_id: str) -> ActionResult | None:
        return self._done.get(action_id)

    def add(self, result: ActionResult) -> None:
        self._done[result.action_id] = result
        while len(self._done) > self._size:
            self._done.popitem(last=False)

    def repeat(self, action_id: str) -> ActionResult | None:
        first = self.get(action_id)
        if first is None:
            return None
        return first.model_copy(update={"status": ActionStatus.already, "changed": False,
                                        "message": "already done by this action id"})


class SecretDrop:
    """Hands a newly issued secret to its owner: a ``0600`` file in ``secret_drop_dir``.

    Without a directory the secret is discarded; it never reaches a result or a log.
    """

    def __init__(self, directory: str | os.PathLike[str] | None) -> None:
        self.directory = Path(directory) if directory else None

    def _path(self, provider: str, identity_id: str, credential_id: str) -> Path | None:
        if self.directory is None:
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_"
                       for c in f"{provider}-{identity_id}-{credential_id}")
        return self.directory / f"{safe}.secret"

    def delivered(self, provider: str, identity_id: str, credential_id: str) -> str:
        """A note for a credential an earlier attempt issued: was its secret delivered?"""
        path = self._path(provider, identity_id, credential_id)
        if path is not None and path.exists():
            return f"secret written to {path}"
        return ("the new secret was lost with the earlier attempt's answer (it is shown "
                "once): issue another by hand for the owner")

    def deliver(self, provider: str, identity_id: str, credential_id: str, secret: str) -> str:
        """Store the secret; return a note for the result (a path, never the value)."""
        path = self._path(provider, identity_id, credential_id)
        if self.directory is None or path is None:
            return "secret discarded (set options.secret_drop_dir to deliver new secrets)"
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secret)
        return f"secret written to {path}"


def issued_earlier(params: dict[str, Any], field: str, now: Iterable[str]) -> str | None:
    """On a retry, the credential an earlier attempt of *this* action issued: listed now in
    ``field`` and absent from the intent's snapshot (``params['_snapshot']``, recorded before
    the first attempt wrote anything). None on a first attempt or when it is not one clear
    credential. A retry that finds one resumes the rotation instead of issuing another."""
    snap = params.get("_snapshot")
    if not isinstance(snap, dict) or not isinstance(snap.get(field), dict | list):
        return None
    fresh = [i for i in now if i not in snap[field]]
    return fresh[0] if len(fresh) == 1 else None


def snapshot_before(params: dict[str, Any], field: str) -> Any:
    """``field`` of the intent's snapshot (the state before the first attempt), or None."""
    snap = params.get("_snapshot")
    return snap.get(field) if isinstance(snap, dict) else None


def wanted(params: dict[str, Any], native: str, playbook: str | None = None) -> list[str] | None:
    """Which grants a reduce_scope should remove; ``None`` means the adapter's default (all).

    Adapter-native keys (``groups``, ``policies``) win, where ``[]`` means none. Then the
    provider-neutral playbook params: ``only_new_grants`` with the planner-filled
    ``new_grants`` (the names the alert reported), then ``remove_groups``/``detach_policies``
    where an empty list means the default.
    """
    if params.get(native) is not None:
        return [str(x) for x in params[native]]
    if params.get("only_new_grants") and params.get("new_grants"):
        return [str(x) for x in params["new_grants"]]
    if playbook and params.get(playbook):
        return [str(x) for x in params[playbook]]
    return None


def refuse_credential_target(provider: str, identity: IdentityRef,
                             params: dict[str, Any]) -> None:
    """For adapters whose revoke can only disable the whole identity: a step that asks to
    revoke single credentials is refused, never widened to the identity."""
    if params.get("target") == "credential" or params.get("credentials"):
        raise PermanentProviderError(
            f"{provider} can revoke only the whole identity {identity.id}, not single "
            "credentials: use rotate, or a revoke step with target: identity",
            provider=provider, code="Unsupported")


def named_secret(params: dict[str, Any], native: str, held: Iterable[str],
                 provider: str, owner: str) -> str | None:
    """The secret a rotate names: the adapter-native param, else the first of the planner's
    ``credentials``; a name the identity does not hold is refused (the native param keeps
    its own "already gone" meaning)."""
    if params.get(native) is not None:
        return str(params[native])
    named = next(iter(params.get("credentials") or []), None)
    if named is not None and named not in set(held):
        raise PermanentProviderError(f"{owner} holds no credential {named}",
                                     provider=provider, code="NoSuchCredential")
    return str(named) if named is not None else None


def refuse_credential_kind(provider: str, identity: IdentityRef, params: dict[str, Any],
                           handles: str) -> None:
    """A rotate step asking for a kind of credential this adapter does not rotate
    (``params.credential``) is refused, never answered by rotating something else."""
    kind = params.get("credential")
    if kind not in (None, "all", handles):
        raise PermanentProviderError(
            f"{provider} rotates only the {handles} of {identity.id}, not its {kind}: "
            "the step cannot be honoured here", provider=provider, code="Unsupported")
