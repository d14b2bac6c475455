"""Adapter for Stanch's mock IdP (``stanch/mock_idp``), reached over HTTP like a real one.

Every action reads (the identity, and the change log for this ``action_id``), decides,
writes with ``Idempotency-Key: <action_id>``, then reads again to verify. ``before`` and
``after`` are full snapshots; ``undo.params`` names exactly what to put back.

Reading the change log first keeps a retried action honest. A repeat of a call whose result
this adapter already returned is ``already`` (nothing changed, no undo). But when an earlier
attempt changed the provider and its result never got out (a verify read that met a 429, a
worker that died), the retry reports ``applied`` with the before-state rewound from the
change log and the full undo, so a rollback can still restore everything.

Endpoints, as the mock IdP documents them:
    GET    /identities/{id}                          state
    GET    /changes?identity=&idempotency_key=       what an action already did
    POST   /identities/{id}/groups/remove|add        memberships and grants
                                                     (also elevation: grant_scope/revoke_scope)
    POST   /identities/{id}/sessions/revoke          all sessions
    POST   /identities/{id}/credentials/rotate       new credential, old one inactive
    POST   /identities/{id}/credentials/{cid}/activate|deactivate
    DELETE /identities/{id}/credentials/{cid}        inactive credentials only
    POST   /identities/{id}/disable|enable
"""

from __future__ import annotations

import asyncio
import copy
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from activities.providers._http import retry_after_header
from activities.providers.base import (
    FRESH_SNAPSHOT,
    PermanentProviderError,
    TransientProviderError,
)
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, ActionResult, ActionStatus, IdentityRef, UndoSpec

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_SECONDS = 5.0
_INLINE_MAX_DELAY = 2.0
_DELIVERED_MAX = 10_000

# Which change-log ops each action makes (what a retry must account for).
_OPS: dict[Action, frozenset[str]] = {
    Action.reduce_scope: frozenset({"group.remove"}),
    Action.force_reauth: frozenset({"sessions.revoke"}),
    Action.rotate: frozenset({"credential.rotate"}),
    Action.revoke: frozenset({"identity.disable", "credential.deactivate"}),
}


# The playbook's provider-neutral `credential` → the mock IdP's credential type.
_CREDENTIAL_TYPES = {"password": "password", "access_key": "api_key",
                     "client_secret": "client_secret", "secret_id": "token"}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _by_name(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g["name"]: {"name": g["name"], "privileged": bool(g["privileged"])} for g in groups}


def _rewind(state: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The identity as it was before ``changes`` (newest undone first)."""
    s = copy.deepcopy(state)
    creds = {c["id"]: c for c in s["credentials"]}
    for change in reversed(changes):
        op, d = change["op"], change["detail"]
        if op == "group.remove" and d["name"] not in _by_name(s["groups"]):
            s["groups"].append({"name": d["name"], "privileged": bool(d["privileged"])})
        elif op == "sessions.revoke":
            known = {x["id"] for x in s["sessions"]}
            s["sessions"] += [dict(x) for x in d.get("sessions", []) if x["id"] not in known]
        elif op == "identity.disable":
            s["status"] = d["from"]
        elif op == "credential.deactivate" and d["credential_id"] in creds:
            creds[d["credential_id"]]["status"] = "active"
        elif op == "credential.rotate":
            creds.pop(d["new_credential_id"], None)
            if d["old_credential_id"] in creds:
                creds[d["old_credential_id"]]["status"] = d.get("old_status", "active")
    s["groups"].sort(key=lambda g: g["name"])
    s["sessions"].sort(key=lambda x: (x["created_at"], x["id"]))
    s["credentials"] = sorted(creds.values(), key=lambda c: (c["created_at"], c["id"]))
    return s


class MockProvider:
    """The IdentityProvider for the mock IdP."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        inline_retries: int = 2,
    ) -> None:
        self.name = name
        self.attempts = 1 + max(0, inline_retries)
        self.base_url = base_url.rstrip("/")
        # Action ids whose result this adapter returned: a repeat of one is `already`.
        self._delivered: OrderedDict[str, None] = OrderedDict()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"user-agent": "stanch-mock-provider"},
        )

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings) -> MockProvider:
        opts = conf.options
        url = str(opts.get("url") or settings.mock_idp.url)
        timeout = float(opts.get("timeout", opts.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)))
        return cls(name, url, timeout=timeout,
                   inline_retries=int(opts.get("inline_retries", 2)))

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | list[Any] | None:
        """One call, retried a few times in place when it is safe and worth it.

        Reads are safe to repeat, and so are writes: every write carries the action's
        idempotency key and is a state transition. Retrying a rate-limited or failed call
        here, honouring Retry-After, keeps one flaky call from failing the whole
        read-write-verify attempt (Temporal then retries the activity, more slowly).
        """
        for attempt in range(self.attempts):
            try:
                return await self._call_once(method, path, key=key, body=body, params=params,
                                             missing_ok=missing_ok)
            except TransientProviderError as err:
                if attempt + 1 >= self.attempts or (method != "GET" and key is None):
                    raise
                delay = err.retry_after if err.retry_after is not None else 0.1 * 2 ** attempt
                if delay > _INLINE_MAX_DELAY:
                    raise  # a long back-off is Temporal's job, with the worker slot free
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _call_once(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | list[Any] | None:
        """One request; map failures onto Transient/PermanentProviderError.

        ``missing_ok`` turns a 404 for a *sub-resource* (a credential already deleted) into
        ``None``; an unknown identity is always permanent.
        """
        headers = {"Idempotency-Key": key} if key else None
        try:
            resp = await self._client.request(method, path, json=body, params=params,
                                              headers=headers)
        except httpx.TimeoutException as err:
            raise TransientProviderError(
                f"{method} {path} timed out; retry (an idempotency key guards the write)",
                provider=self.name, code="Timeout",
            ) from err
        except httpx.TransportError as err:
            raise TransientProviderError(
                f"{method} {path} failed to connect to {self.base_url}: {type(err).__name__}",
                provider=self.name, code="ConnectionError",
            ) from err
        if resp.is_success:
            data: dict[str, Any] | list[Any] = resp.json()
            return data
        code, message = self._error_of(resp)
        if resp.status_code == 404 and missing_ok and code != "NoSuchEntity":
            return None
        what = f"{method} {path}: {message}"
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientProviderError(
                what, provider=self.name, status=resp.status_code, code=code,
                retry_after=retry_after_header(resp),
            )
        raise PermanentProviderError(what, provider=self.name, status=resp.status_code, code=code)

    @staticmethod
    def _error_of(resp: httpx.Response) -> tuple[str, str]:
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and "error" in data:
            return str(data["error"]), str(data.get("message", ""))[:300]
        if isinstance(data, dict) and "detail" in data:
            return "InvalidInput", str(data["detail"])[:300]
        return f"HTTP{resp.status_code}", resp.reason_phrase

    async def _identity(self, identity_id: str) -> dict[str, Any]:
        data = await self._call("GET", f"/identities/{_seg(identity_id)}")
        assert isinstance(data, dict)
        return data

    async def _changes_by(self, identity_id: str, action_id: str) -> list[dict[str, Any]]:
        data = await self._call("GET", "/changes",
                                params={"identity": identity_id, "idempotency_key": action_id})
        assert isinstance(data, list)
        return data

    async def _read(self, identity_id: str, action_id: str
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # Both reads finish before either error surfaces: no orphan request outlives the call.
        state, prior = await asyncio.gather(self._identity(identity_id),
                                            self._changes_by(identity_id, action_id),
                                            return_exceptions=True)
        for outcome in (state, prior):
            if isinstance(outcome, BaseException):
                raise outcome
        assert isinstance(state, dict) and isinstance(prior, list)
        return state, prior

    async def _write(self, method: str, identity_id: str, sub: str, key: str,
                     body: dict[str, Any] | None = None, *, missing_ok: bool = False
                     ) -> dict[str, Any] | None:
        path = f"/identities/{_seg(identity_id)}{sub}"
        data = await self._call(method, path, key=key, body=body, missing_ok=missing_ok)
        assert data is None or isinstance(data, dict)
        log.debug("provider.write", provider=self.name, identity=identity_id, call=sub,
                  action_id=key, changed=None if data is None else data.get("changed"))
        return data

    def _verify_failed(self, identity: IdentityRef, what: str) -> TransientProviderError:
        # Real IdPs are eventually consistent; a retry re-reads and re-applies.
        return TransientProviderError(f"identity {identity.id!r}: verify failed: {what}",
                                      provider=self.name, code="VerifyFailed")

    # ------------------------------------------------------------------ protocol

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        return await self._identity(identity.id)

    async def _read_or_fresh(self, identity_id: str, action_id: str, params: dict[str, Any]
                             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The state and this action's earlier effects; on a first attempt, the snapshot the
        activity just took, and none (nothing can have written under this action id)."""
        fresh = params.get(FRESH_SNAPSHOT)
        if isinstance(fresh, dict) and action_id not in self._delivered:
            return copy.deepcopy(fresh), []
        return await self._read(identity_id, action_id)

    async def _after(self, identity_id: str, resp: dict[str, Any] | None) -> dict[str, Any]:
        """The identity after our writes: the last write's answer carries it; else read."""
        if resp is not None and isinstance(resp.get("identity"), dict):
            return dict(resp["identity"])
        return await self._identity(identity_id)

    async def _begin(self, action: Action, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read the state, and the effects of an earlier attempt whose result was lost."""
        state, prior = await self._read_or_fresh(identity.id, action_id, params)
        if action_id in self._delivered:
            return state, []
        return state, [c for c in prior if c["op"] in _OPS[action]]

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        state, earlier = await self._begin(Action.reduce_scope, action_id, identity, params)
        current = _by_name(state["groups"])
        # Provider-neutral playbook params: `remove_groups`, or `only_new_grants` with the
        # grants the alert named (`new_grants`, filled by the planner); else all privileged.
        wanted = params.get("groups") or params.get("remove_groups")
        if wanted is None and params.get("only_new_grants") and params.get("new_grants"):
            wanted = params["new_grants"]
        if wanted is None:
            targets = [n for n, g in current.items() if g["privileged"]]
        elif isinstance(wanted, list) and all(isinstance(n, str) for n in wanted):
            targets = list(wanted)
        else:
            raise PermanentProviderError("reduce_scope: params.groups must be a list of names",
                                         provider=self.name, code="InvalidInput")
        removed = {c["detail"]["name"]: _by_name([c["detail"]])[c["detail"]["name"]]
                   for c in earlier}
        present = [n for n in targets if n in current]
        resp = None
        if present:
            resp = await self._write("POST", identity.id, "/groups/remove", action_id,
                                     {"groups": present})
            removed.update(_by_name((resp or {}).get("removed", [])))

        after = await self._after(identity.id, resp)
        left = [n for n in targets if n in _by_name(after["groups"])]
        if left:
            raise self._verify_failed(identity, f"still a member of {left}")
        groups = sorted(removed.values(), key=lambda g: g["name"])
        undo = UndoSpec(action=Action.reduce_scope, params={"groups": groups},
                        description="re-add " + ", ".join(g["name"] for g in groups))
        return self._done(action_id, Action.reduce_scope, identity, bool(groups),
                          before=_rewind(state, earlier), after=after, undo=undo,
                          message=f"removed {len(groups)} membership(s)")

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        state, earlier = await self._begin(Action.force_reauth, action_id, identity, params)
        revoked: list[str] = [sid for c in earlier for sid in c["detail"]["session_ids"]]
        resp = None
        if state["sessions"]:
            resp = await self._write("POST", identity.id, "/sessions/revoke", action_id)
            revoked += (resp or {}).get("revoked", [])
        after = await self._after(identity.id, resp)
        if after["sessions"]:
            raise self._verify_failed(identity, f"{len(after['sessions'])} session(s) remain")
        return self._done(action_id, Action.force_reauth, identity, bool(revoked),
                          before=_rewind(state, earlier), after=after, undo=None,
                          irreversible=True,
                          message=f"revoked {len(revoked)} session(s); no undo: sessions are "
                                  "gone, re-login restores use")

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        state, prior = await self._read_or_fresh(identity.id, action_id, params)
        done = next((c for c in prior if c["op"] == "credential.rotate"), None)
        earlier: list[dict[str, Any]] = []
        resp: dict[str, Any] | None = None
        if done is not None and action_id in self._delivered:
            # A repeat of a rotation already reported: rotating again would issue a third key.
            return self._done(action_id, Action.rotate, identity, False, before=state,
                              after=state, undo=None,
                              message=f"already rotated {done['detail']['old_credential_id']}")
        limited = next((c for c in prior if c["op"] == "credential.deactivate"), None)
        if done is None and limited is not None:
            # An earlier attempt met the limit and deactivated the old credential.
            cid = limited["detail"]["credential_id"]
            undo = UndoSpec(action=Action.rotate, params={"reactivate": [cid]},
                            description=f"reactivate {cid}")
            delivered = action_id in self._delivered
            return self._done(action_id, Action.rotate, identity, not delivered,
                              before=_rewind(state, [limited]), after=state, undo=undo,
                              message=f"{cid} deactivated; no new credential issued (limit)")
        if done is not None:
            earlier = [done]
            detail = done["detail"]
            old_id, new_id = detail["old_credential_id"], detail["new_credential_id"]
            old_status = detail.get("old_status", "active")
        else:
            old = self._rotation_source(identity, state, params)
            old_id, old_status = old["id"], old["status"]
            try:
                resp = await self._write("POST", identity.id, "/credentials/rotate",
                                         action_id, {"credential_id": old_id})
            except PermanentProviderError as err:
                if err.code != "LimitExceeded":
                    raise
                return await self._rotate_at_limit(action_id, identity, state, old)
            assert resp is not None
            # The new secret is shown once; Stanch never stores or logs it.
            resp.pop("secret", None)
            new_id = resp["new_credential_id"]

        after = await self._after(identity.id, resp)
        now = {c["id"]: c for c in after["credentials"]}
        if now.get(new_id, {}).get("status") != "active":
            raise self._verify_failed(identity, f"new credential {new_id!r} is not active")
        if now.get(old_id, {}).get("status") not in (None, "inactive"):
            raise self._verify_failed(identity, f"old credential {old_id!r} is still active")
        undo = UndoSpec(
            action=Action.rotate,
            params={"reactivate": [old_id] if old_status == "active" else [],
                    "deactivate": [new_id], "delete": [new_id],
                    "old_credential_id": old_id, "new_credential_id": new_id},
            description=f"reactivate {old_id}; deactivate and delete {new_id}",
        )
        return self._done(action_id, Action.rotate, identity, True,
                          before=_rewind(state, earlier), after=after, undo=undo,
                          message=f"rotated {old_id} to {new_id}; {old_id} is inactive")

    async def _rotate_at_limit(self, action_id: str, identity: IdentityRef,
                               state: dict[str, Any], old: dict[str, Any]) -> ActionResult:
        """At the IdP's per-type limit no credential is deleted to make room: an active old
        one is deactivated (reversible) and none issued; otherwise a human decides."""
        if old["status"] != "active":
            raise PermanentProviderError(
                f"identity {identity.id!r} is at its {old['type']} limit and {old['id']} is "
                "already inactive; Stanch never deletes a credential: delete one by hand, "
                "then retry", provider=self.name, code="LimitExceeded")
        resp = await self._write("POST", identity.id, f"/credentials/{_seg(old['id'])}"
                                 "/deactivate", action_id)
        after = await self._after(identity.id, resp)
        if {c["id"]: c["status"] for c in after["credentials"]}.get(old["id"]) != "inactive":
            raise self._verify_failed(identity, f"{old['id']!r} is still active")
        undo = UndoSpec(action=Action.rotate, params={"reactivate": [old["id"]]},
                        description=f"reactivate {old['id']}")
        return self._done(action_id, Action.rotate, identity, True, before=state, after=after,
                          undo=undo, message=f"{old['id']} deactivated; no new credential "
                          f"issued: {identity.id} is at its {old['type']} limit and Stanch "
                          "never deletes one")

    def _named_credentials(self, identity: IdentityRef, state: dict[str, Any],
                           params: dict[str, Any]) -> list[str] | None:
        """The credentials a credential revoke names; None: the whole identity. A name the
        identity does not hold is refused, never skipped."""
        named = [str(c) for c in params.get("credentials") or []]
        if not named:
            if params.get("target") == "credential":
                raise PermanentProviderError(
                    f"revoke of a credential on {identity.id!r}, but none was named",
                    provider=self.name, code="NoCredentialNamed")
            return None
        held = {c["id"] for c in state["credentials"]}
        foreign = [c for c in named if c not in held]
        if foreign:
            raise PermanentProviderError(
                f"identity {identity.id!r} holds no credential {', '.join(foreign)}",
                provider=self.name, code="NoSuchCredential")
        return named

    def _rotation_source(self, identity: IdentityRef, state: dict[str, Any],
                         params: dict[str, Any]) -> dict[str, Any]:
        creds: list[dict[str, Any]] = state["credentials"]
        named = params.get("credential_id") or next(iter(params.get("credentials") or []), None)
        if named:
            found = [c for c in creds if c["id"] == named]
        elif params.get("credential_type") or params.get("credential") in _CREDENTIAL_TYPES:
            ctype = params.get("credential_type") or _CREDENTIAL_TYPES[params["credential"]]
            found = [c for c in creds if c["type"] == ctype and c["status"] == "active"]
        else:
            found = [c for c in creds if c["type"] != "mfa" and c["status"] == "active"]
        if not found:
            raise PermanentProviderError(
                f"identity {identity.id!r}: no active credential to rotate"
                f" (params {sorted(k for k in params if not k.startswith('_'))})",
                provider=self.name, code="NoActiveCredential")
        return found[0]

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        state, earlier = await self._begin(Action.revoke, action_id, identity, params)
        disabled = any(c["op"] == "identity.disable" for c in earlier)
        deactivated = [c["detail"]["credential_id"] for c in earlier
                       if c["op"] == "credential.deactivate"]
        last: dict[str, Any] | None = None
        named = self._named_credentials(identity, state, params)
        if named is None and state["status"] == "active":
            resp = await self._write("POST", identity.id, "/disable", action_id)
            disabled = disabled or bool((resp or {}).get("changed"))
            last = resp or last
        for cred in state["credentials"]:
            if cred["status"] != "active" or (named is not None and cred["id"] not in named):
                continue
            resp = await self._write("POST", identity.id,
                                     f"/credentials/{_seg(cred['id'])}/deactivate", action_id,
                                     missing_ok=True)
            if resp and resp.get("changed"):
                deactivated.append(cred["id"])
            last = resp or last

        after = await self._after(identity.id, last)
        still = [c["id"] for c in after["credentials"] if c["status"] == "active"
                 and (named is None or c["id"] in named)]
        if (named is None and after["status"] != "disabled") or still:
            raise self._verify_failed(identity, f"status {after['status']}, active {still}")
        deactivated = list(dict.fromkeys(deactivated))
        steps = (["re-enable"] if disabled else []) + (
            [f"reactivate {', '.join(deactivated)}"] if deactivated else [])
        undo = UndoSpec(action=Action.revoke,
                        params={"enable": disabled, "reactivate": deactivated},
                        description=" and ".join(steps))
        return self._done(action_id, Action.revoke, identity, disabled or bool(deactivated),
                          before=_rewind(state, earlier), after=after, undo=undo,
                          message=("" if named is not None else "disabled; ")
                          + f"deactivated {len(deactivated)} credential(s)")

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        identity = original.identity
        spec = original.undo
        if spec is None:
            if original.irreversible:
                raise PermanentProviderError(
                    f"{original.action.value} on {identity.id!r} has no undo "
                    f"({original.message or 'irreversible'})",
                    provider=self.name, code="Irreversible")
            state = await self._identity(identity.id)
            return self._undone(action_id, original, False, state, state,
                                f"nothing to undo: {original.action.value} was "
                                f"{original.status.value}")
        state = await self._identity(identity.id)
        if spec.action is Action.reduce_scope:
            changed = await self._undo_reduce_scope(action_id, identity, spec)
        elif spec.action is Action.rotate:
            changed = await self._undo_rotate(action_id, identity, spec)
        elif spec.action is Action.revoke:
            changed = await self._undo_revoke(action_id, identity, spec)
        else:
            raise PermanentProviderError(f"cannot undo {spec.action.value}",
                                         provider=self.name, code="Irreversible")
        after = await self._identity(identity.id)
        self._verify_undone(identity, spec, original.before, after)
        return self._undone(action_id, original, changed, state, after,
                            spec.description or f"undid {original.action.value}")

    async def _undo_reduce_scope(self, action_id: str, identity: IdentityRef, spec: UndoSpec
                                 ) -> bool:
        groups = list(_by_name(spec.params.get("groups", [])).values())
        resp = await self._write("POST", identity.id, "/groups/add", action_id,
                                 {"groups": groups}) if groups else None
        return bool((resp or {}).get("changed"))

    async def _undo_rotate(self, action_id: str, identity: IdentityRef, spec: UndoSpec) -> bool:
        changed = False
        for cid in spec.params.get("reactivate", []):
            resp = await self._write("POST", identity.id, f"/credentials/{_seg(cid)}/activate",
                                     action_id)
            changed = changed or bool((resp or {}).get("changed"))
        for cid in spec.params.get("deactivate", []):
            resp = await self._write("POST", identity.id,
                                     f"/credentials/{_seg(cid)}/deactivate", action_id,
                                     missing_ok=True)
            changed = changed or bool((resp or {}).get("changed"))
        for cid in spec.params.get("delete", []):
            resp = await self._write("DELETE", identity.id, f"/credentials/{_seg(cid)}",
                                     action_id, missing_ok=True)
            changed = changed or resp is not None
        return changed

    async def _undo_revoke(self, action_id: str, identity: IdentityRef, spec: UndoSpec) -> bool:
        changed = False
        if spec.params.get("enable"):
            resp = await self._write("POST", identity.id, "/enable", action_id)
            changed = bool((resp or {}).get("changed"))
        for cid in spec.params.get("reactivate", []):
            resp = await self._write("POST", identity.id, f"/credentials/{_seg(cid)}/activate",
                                     action_id)
            changed = changed or bool((resp or {}).get("changed"))
        return changed

    def _verify_undone(self, identity: IdentityRef, spec: UndoSpec, before: dict[str, Any],
                       after: dict[str, Any]) -> None:
        """What the undo touched must now equal the captured before-state."""
        p = spec.params
        was_creds = {c["id"]: c["status"] for c in before.get("credentials", [])}
        now_creds = {c["id"]: c["status"] for c in after["credentials"]}
        wrong: list[str] = []
        if spec.action is Action.reduce_scope:
            now = _by_name(after["groups"])
            wrong += [g["name"] for g in _by_name(p.get("groups", [])).values()
                      if now.get(g["name"]) != g]
        touched = [*p.get("reactivate", []), *p.get("deactivate", [])]
        wrong += [cid for cid in touched if now_creds.get(cid) != was_creds.get(cid, "active")
                  and cid not in p.get("delete", [])]
        wrong += [cid for cid in p.get("delete", []) if cid in now_creds]
        if p.get("enable") and after["status"] != before.get("status", "active"):
            wrong.append("status")
        if wrong:
            raise self._verify_failed(identity, f"not restored: {wrong}")

    # ------------------------------------------------------------------ elevation

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add the privileged group ``scope``; False when the identity already holds it."""
        state = await self._identity(identity.id)
        if scope in _by_name(state["groups"]):
            return False
        resp = await self._write("POST", identity.id, "/groups/add", action_id,
                                 {"groups": [{"name": scope, "privileged": True}]})
        after = await self._identity(identity.id)
        if scope not in _by_name(after["groups"]):
            raise self._verify_failed(identity, f"not a member of {scope!r} after the grant")
        changed = bool((resp or {}).get("changed"))
        log.info("provider.scope_granted", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id, changed=changed)
        return changed

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        return scope in _by_name(snapshot.get("groups") or [])

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove the group ``scope``; False when the identity does not hold it."""
        state = await self._identity(identity.id)
        if scope not in _by_name(state["groups"]):
            return False
        resp = await self._write("POST", identity.id, "/groups/remove", action_id,
                                 {"groups": [scope]})
        after = await self._identity(identity.id)
        if scope in _by_name(after["groups"]):
            raise self._verify_failed(identity, f"still a member of {scope!r}")
        changed = bool((resp or {}).get("changed"))
        log.info("provider.scope_revoked", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id, changed=changed)
        return changed

    # ------------------------------------------------------------------ results

    def _done(self, action_id: str, action: Action, identity: IdentityRef, changed: bool, *,
              before: dict[str, Any], after: dict[str, Any], undo: UndoSpec | None,
              irreversible: bool = False, message: str = "") -> ActionResult:
        status = ActionStatus.applied if changed else ActionStatus.already
        self._delivered[action_id] = None
        while len(self._delivered) > _DELIVERED_MAX:
            self._delivered.popitem(last=False)
        log.info("provider.action", provider=self.name, identity=identity.id,
                 action=action.value, action_id=action_id, status=status.value,
                 changed=changed)
        return ActionResult(
            action_id=action_id, action=action, identity=identity, status=status,
            changed=changed, before=before, after=after,
            undo=undo if changed else None, irreversible=irreversible,
            provider_ref=self._ref(action_id), message=message,
        )

    def _undone(self, action_id: str, original: ActionResult, changed: bool,
                before: dict[str, Any], after: dict[str, Any], message: str) -> ActionResult:
        status = ActionStatus.undone if changed else ActionStatus.already
        log.info("provider.undo", provider=self.name, identity=original.identity.id,
                 action=original.action.value, action_id=action_id,
                 original_action_id=original.action_id, status=status.value, changed=changed)
        return ActionResult(
            action_id=action_id, action=original.action, identity=original.identity,
            status=status, changed=changed, before=before, after=after, undo=None,
            provider_ref=self._ref(action_id), message=message,
        )

    def _ref(self, action_id: str) -> str:
        return f"{self.base_url}/changes?idempotency_key={quote(action_id, safe='')}"
