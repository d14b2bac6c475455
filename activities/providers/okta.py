"""Okta adapter (Management API over httpx).

Identity ids are Okta ids: a user id for kind ``user``, an app id for kind ``oauth_app``.

- reduce_scope (user): leave Okta-native groups (``type == OKTA_GROUP``; app-imported and
  built-in groups cannot be left through the API). Params ``groups``: ids or names,
  default all native groups. Undo puts the user back (``PUT /groups/{g}/users/{u}``).
- force_reauth (user): ``DELETE /users/{id}/sessions?oauthTokens=true``; with params
  ``grants: true`` (or a list of client ids) the user's OAuth consent grants are revoked
  too. Irreversible: sessions, tokens and grants are gone; the user signs in again.
- revoke (user): ``POST /users/{id}/lifecycle/suspend``; undo ``…/unsuspend``.
  (*deactivate* is destructive and left to humans.)
- rotate (oauth_app): add a client secret, deactivate the old one (params ``secret_id``, or
  the planner's ``credentials``). Okta keeps at most two secrets: at the limit the old
  secret is only deactivated and the result names the secret a human must delete before a
  new one can be issued (Stanch never deletes one); with both inactive it stops for a
  human. Undo puts the old secret back in its status and deactivates and deletes the new
  one. The new secret goes to
  ``options.secret_drop_dir`` or is discarded.

Elevation (``grant_scope``/``revoke_scope``, users): the scope is an Okta group id;
``PUT``/``DELETE /api/v1/groups/{groupId}/users/{userId}`` after reading the user's groups
(a held group may also be named by its name; the management subset has no group search,
so a grant needs the id). Only ``OKTA_GROUP`` memberships can change (403 otherwise).

The playbook's ``remove_groups`` and ``only_new_grants``/``new_grants`` choose groups too.

Rate limits: 429 ``E0000047`` with ``X-Rate-Limit-Reset`` (epoch seconds) →
``TransientProviderError(retry_after=reset - now)``. Read calls use the read token, writes
the action token (``SSWS`` API tokens, or ``Bearer`` OAuth access tokens with
``options.auth_scheme = "Bearer"``).
"""

from __future__ import annotations

from typing import Any

import httpx

from activities.providers._common import (
    DoneActions,
    SecretDrop,
    action_result,
    dispatch_undo,
    issued_earlier,
    named_secret,
    refuse_credential_kind,
    refuse_credential_target,
    snapshot_before,
    undo_result,
    wanted,
)
from activities.providers._credentials import require
from activities.providers._http import HttpApi, rate_limit_reset, seg
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityKind, IdentityRef, UndoSpec

log = get_logger(__name__)


class OktaProvider:
    def __init__(self, name: str, api: HttpApi, secret_drop: SecretDrop | None = None) -> None:
        self.name = name
        self._api = api
        self._drop = secret_drop or SecretDrop(None)
        self._done = DoneActions()

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings,
                      transport: httpx.AsyncBaseTransport | None = None) -> OktaProvider:
        opts = conf.options
        if not opts.get("org_url"):
            raise PermanentProviderError("options.org_url is required", provider=name,
                                         code="Config")
        scheme = str(opts.get("auth_scheme", "SSWS"))

        def auth(purpose: Any) -> dict[str, str]:
            token = require(conf, purpose, "token", provider=name, env="OKTA_API_TOKEN")
            return {"Authorization": f"{scheme} {token}"}

        api = HttpApi(name, str(opts["org_url"]), read_headers=auth("read"),
                      action_headers=auth("action"), retry_after=rate_limit_reset,
                      timeout=float(opts.get("timeout", 20)), transport=transport,
                      default_headers={"Accept": "application/json"})
        return cls(name, api, SecretDrop(opts.get("secret_drop_dir")))

    async def aclose(self) -> None:
        await self._api.aclose()

    # ------------------------------------------------------------------ reads

    async def _list(self, path: str, what: str, **params: Any) -> list[dict[str, Any]]:
        """GET a collection, following ``Link: rel="next"`` pages."""
        items: list[dict[str, Any]] = []
        url: str | None = path
        query: dict[str, Any] | None = params or None
        while url:
            r = await self._api.request("GET", url, what=what, params=query)
            items += r.json()
            url = r.links.get("next", {}).get("url")
            query = None
        return items

    async def _user_state(self, user_id: str) -> dict[str, Any]:
        # GET /api/v1/users/{id}
        user = (await self._api.request("GET", f"/api/v1/users/{seg(user_id)}",
                                        what=f"read user {user_id}")).json()
        groups = await self._list(f"/api/v1/users/{seg(user_id)}/groups", "list user groups")
        grants = await self._list(f"/api/v1/users/{seg(user_id)}/grants", "list user grants")
        return {
            "status": user.get("status"),
            "groups": dict(sorted((g["id"], g.get("profile", {}).get("name", ""))
                                  for g in groups)),
            "native_groups": sorted(g["id"] for g in groups if g.get("type") == "OKTA_GROUP"),
            "grants": sorted(g["id"] for g in grants),
        }

    async def _app_state(self, app_id: str) -> dict[str, Any]:
        # GET /api/v1/apps/{appId}/credentials/secrets
        r = await self._api.request("GET", f"/api/v1/apps/{seg(app_id)}/credentials/secrets",
                                    what=f"list client secrets of {app_id}")
        return {"secrets": {s["id"]: s.get("status") for s in r.json()}}

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        if identity.kind is IdentityKind.oauth_app:
            return await self._app_state(identity.id)
        return await self._user_state(identity.id)

    def _verify(self, ok: bool, what: str) -> None:
        if not ok:
            raise TransientProviderError(f"{what} not visible after the write; retry",
                                         provider=self.name, code="VerifyFailed", retry_after=1.0)

    def _user_only(self, identity: IdentityRef, action: str) -> None:
        if identity.kind is IdentityKind.oauth_app:
            raise PermanentProviderError(f"{action} works on Okta users; for an app, rotate "
                                         "its client secret", provider=self.name,
                                         code="Unsupported")

    # ------------------------------------------------------------------ reduce_scope

    async def _membership(self, group_id: str, user_id: str, present: bool) -> None:
        # PUT|DELETE /api/v1/groups/{groupId}/users/{userId}: both 204, idempotent
        await self._api.request("PUT" if present else "DELETE",
                                f"/api/v1/groups/{seg(group_id)}/users/{seg(user_id)}", write=True,
                                expect=(204,), what=f"group {group_id} membership")

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        self._user_only(identity, "reduce_scope")
        before = await self._user_state(identity.id)
        names = wanted(params, "groups", "remove_groups")
        groups = [g for g in before["native_groups"]
                  if names is None or g in names or before["groups"][g] in names]
        if not groups:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before,
                                 message="no matching Okta-native groups")
        for gid in groups:
            await self._membership(gid, identity.id, present=False)
        after = await self._user_state(identity.id)
        self._verify(not set(groups) & set(after["groups"]), "group removal")
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=identity.id, groups=len(groups))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"removed from {len(groups)} Okta groups",
            undo=UndoSpec(action=Action.reduce_scope, params={"op": "add_groups",
                                                              "groups": groups},
                          description="add the user back to the groups"))

    async def _undo_groups(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        uid = original.identity.id
        before = await self._user_state(uid)
        missing = [g for g in original.undo.params["groups"] if g not in before["groups"]]
        for gid in missing:
            await self._membership(gid, uid, present=True)
        after = await self._user_state(uid) if missing else before
        self._verify(set(original.undo.params["groups"]) <= set(after["groups"]),
                     "group restore")
        return undo_result(action_id, original, changed=bool(missing), before=before,
                           after=after)

    # ------------------------------------------------------------------ force_reauth

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        self._user_only(identity, "force_reauth")
        repeat = self._done.repeat(action_id)
        if repeat is not None:
            return repeat
        uid = identity.id
        before = await self._user_state(uid)
        # DELETE /api/v1/users/{userId}/sessions?oauthTokens=true
        await self._api.request("DELETE", f"/api/v1/users/{seg(uid)}/sessions", write=True,
                                expect=(204,), params={"oauthTokens": "true"},
                                what="revoke sessions")
        grants = params.get("grants")
        if grants is True and before["grants"]:
            # DELETE /api/v1/users/{userId}/grants
            await self._api.request("DELETE", f"/api/v1/users/{seg(uid)}/grants", write=True,
                                    expect=(204,), what="revoke user grants")
        elif isinstance(grants, list):
            for client_id in grants:
                # DELETE /api/v1/users/{userId}/clients/{clientId}/grants
                await self._api.request("DELETE", f"/api/v1/users/{seg(uid)}/clients/"
                                        f"{seg(client_id)}/grants", write=True, expect=(204,),
                                        what=f"revoke grants for client {client_id}")
        after = await self._user_state(uid)
        if grants is True:
            self._verify(not after["grants"], "grant revocation")
        log.info("action.applied", provider=self.name, action="force_reauth",
                 action_id=action_id, identity=uid, grants=bool(grants))
        result = action_result(
            action_id, Action.force_reauth, identity, changed=True, before=before, after=after,
            irreversible=True,
            message="sessions and OAuth tokens revoked" + (", consent grants revoked"
                                                           if grants else "")
                    + "; cannot be undone, the user signs in again")
        self._done.add(result)
        return result

    # ------------------------------------------------------------------ revoke

    async def _lifecycle(self, uid: str, op: str) -> None:
        # POST /api/v1/users/{id}/lifecycle/{suspend|unsuspend}
        await self._api.request("POST", f"/api/v1/users/{seg(uid)}/lifecycle/{op}", write=True,
                                expect=(200,), what=f"{op} user {uid}")

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        self._user_only(identity, "revoke")
        refuse_credential_target(self.name, identity, params)
        before = await self._user_state(identity.id)
        if before["status"] == "SUSPENDED":
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before, message="already suspended")
        if before["status"] != "ACTIVE":
            raise PermanentProviderError(
                f"cannot suspend user {identity.id} in status {before['status']}: Okta "
                "suspends only ACTIVE users", provider=self.name, code="InvalidStatus")
        await self._lifecycle(identity.id, "suspend")
        after = await self._user_state(identity.id)
        self._verify(after["status"] == "SUSPENDED", "suspend")
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=identity.id)
        return action_result(
            action_id, Action.revoke, identity, changed=True, before=before, after=after,
            message="user suspended",
            undo=UndoSpec(action=Action.revoke, params={"op": "unsuspend"},
                          description="unsuspend the user"))

    async def _undo_suspend(self, action_id: str, original: ActionResult) -> ActionResult:
        uid = original.identity.id
        before = await self._user_state(uid)
        changed = before["status"] == "SUSPENDED"
        if changed:
            await self._lifecycle(uid, "unsuspend")
        after = await self._user_state(uid) if changed else before
        self._verify(after["status"] != "SUSPENDED", "unsuspend")
        return undo_result(action_id, original, changed=changed, before=before, after=after)

    # ------------------------------------------------------------------ rotate

    async def _secret_op(self, app_id: str, secret_id: str, op: str) -> None:
        path = f"/api/v1/apps/{seg(app_id)}/credentials/secrets/{seg(secret_id)}"
        if op == "delete":
            # DELETE …/secrets/{secretId} (only inactive secrets)
            await self._api.request("DELETE", path, write=True, expect=(204,),
                                    what=f"delete secret {secret_id}")
        else:
            # POST …/secrets/{secretId}/lifecycle/{activate|deactivate}
            await self._api.request("POST", f"{path}/lifecycle/{op}", write=True,
                                    expect=(200,), what=f"{op} secret {secret_id}")

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        if identity.kind is not IdentityKind.oauth_app:
            raise PermanentProviderError("rotate works on OAuth apps (client secrets); a "
                                         "user's password reset is for a human to start",
                                         provider=self.name, code="Unsupported")
        refuse_credential_kind(self.name, identity, params, "client_secret")
        app = identity.id
        before = await self._app_state(app)
        secrets: dict[str, str] = before["secrets"]
        now_secrets = secrets
        resumed = issued_earlier(params, "secrets", now_secrets)
        snap = snapshot_before(params, "secrets")
        if resumed is not None or (isinstance(snap, dict) and set(snap) == set(now_secrets)):
            # A retry: decide from the state before the first attempt (the intent snapshot),
            # so a secret an earlier attempt created (`resumed`) or deactivated is not
            # issued or refused again; act only on what is still left to do.
            before = dict(params["_snapshot"])
            secrets = dict(snap)
        old = named_secret(params, "secret_id", secrets, self.name, f"app {app}")
        if old is None:
            active = [s for s, st in secrets.items() if st == "ACTIVE"]
            if len(active) != 1:
                raise PermanentProviderError(
                    f"app {app} has {len(active)} active secrets; pass params.secret_id",
                    provider=self.name, code="AmbiguousSecret")
            old = active[0]
        if old not in secrets:
            raise PermanentProviderError(f"secret {old} does not belong to app {app}",
                                         provider=self.name, code="E0000007")
        others_active = [x for x, st in secrets.items() if x != old and st == "ACTIVE"]
        if secrets[old] == "INACTIVE" and others_active:
            return action_result(action_id, Action.rotate, identity, changed=False,
                                 before=before, after=before,
                                 message=f"secret {old} is inactive and {others_active[0]} "
                                         "is active")
        if resumed is None and len(secrets) >= 2:
            return await self._rotate_at_limit(action_id, identity, before, old, now_secrets)
        if resumed is not None:
            new, note = resumed, self._drop.delivered(self.name, app, resumed)
        else:
            # POST /api/v1/apps/{appId}/credentials/secrets
            made = (await self._api.request(
                "POST", f"/api/v1/apps/{seg(app)}/credentials/secrets", write=True,
                expect=(201,), json={}, what="create client secret")).json()
            new = made["id"]
            note = self._drop.deliver(self.name, app, new, made.get("client_secret", ""))
            made.clear()
        if now_secrets.get(old) == "ACTIVE":
            await self._secret_op(app, old, "deactivate")
        after = await self._app_state(app)
        self._verify(after["secrets"].get(old) == "INACTIVE"
                     and after["secrets"].get(new) == "ACTIVE", "secret rotation")
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=app, old=old, new=new)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before,
            after={**after, "new_secret_id": new},
            message=f"new secret {new} active, {old} inactive; {note}",
            undo=UndoSpec(action=Action.rotate,
                          params={"op": "unrotate", "old": old, "old_status": secrets[old],
                                  "new": new},
                          description=f"{old} back to {secrets[old]}, deactivate and delete "
                                      f"{new}"))

    async def _rotate_at_limit(self, action_id: str, identity: IdentityRef,
                               before: dict[str, Any], old: str,
                               now_secrets: dict[str, str]) -> ActionResult:
        """Okta keeps two secrets; Stanch never deletes one to make room. An active old
        secret is deactivated (contained, reversible) and none issued; else a human decides."""
        app, secrets = identity.id, before["secrets"]
        extra = next(x for x in secrets if x != old)
        if secrets[old] != "ACTIVE":
            raise PermanentProviderError(
                f"app {app} has 2 client secrets ({old}, {extra}), both inactive; Okta allows "
                "2. Stanch never deletes a secret: delete one by hand, then retry",
                provider=self.name, code="LimitExceeded")
        if now_secrets.get(old) == "ACTIVE":  # a retry finds it already deactivated
            await self._secret_op(app, old, "deactivate")
        after = await self._app_state(app)
        self._verify(after["secrets"].get(old) == "INACTIVE", "secret deactivation")
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=app, old=old, new=None)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before, after=after,
            message=f"secret {old} deactivated; no new secret issued: app {app} is at the "
                    f"two-secret limit and Stanch never deletes one. Delete {extra} by hand "
                    "to issue one",
            undo=UndoSpec(action=Action.rotate,
                          params={"op": "unrotate", "old": old, "old_status": "ACTIVE",
                                  "new": None},
                          description=f"reactivate {old}"))

    async def _undo_rotate(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        app = original.identity.id
        old, new = original.undo.params["old"], original.undo.params.get("new")
        status = original.undo.params.get("old_status", "ACTIVE")
        before = await self._app_state(app)
        secrets = before["secrets"]
        changed = False
        if old in secrets and secrets[old] != status:
            await self._secret_op(app, old, "activate" if status == "ACTIVE" else "deactivate")
            changed = True
        if new and new in secrets:
            if secrets[new] == "ACTIVE":
                await self._secret_op(app, new, "deactivate")
            await self._secret_op(app, new, "delete")
            changed = True
        after = await self._app_state(app) if changed else before
        self._verify(after["secrets"].get(old) == status and new not in after["secrets"],
                     "undo rotation")
        return undo_result(action_id, original, changed=changed, before=before, after=after)

    # ------------------------------------------------------------------ elevation

    async def _groups_of(self, identity: IdentityRef) -> dict[str, str]:
        self._user_only(identity, "elevation")
        # GET /api/v1/users/{id}/groups (404 for an unknown user)
        groups = await self._list(f"/api/v1/users/{seg(identity.id)}/groups", "list user groups")
        return {g["id"]: g.get("profile", {}).get("name", "") for g in groups}

    @staticmethod
    def _held(groups: dict[str, str], scope: str) -> str | None:
        """The held group a scope names: its id, or its name when exactly one matches."""
        if scope in groups:
            return scope
        named = [gid for gid, name in groups.items() if name == scope]
        return named[0] if len(named) == 1 else None

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        return self._held(snapshot.get("groups") or {}, scope) is not None

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add the user to Okta group ``scope`` (a group id); False when already a member."""
        if not scope or "/" in scope:
            raise PermanentProviderError(f"scope {scope!r} is not an Okta group id",
                                         provider=self.name, code="InvalidScope")
        if self._held(await self._groups_of(identity), scope) is not None:
            return False
        await self._membership(scope, identity.id, present=True)
        self._verify(scope in await self._groups_of(identity), f"group {scope} grant")
        log.info("elevation.scope_granted", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id)
        return True

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove the user from group ``scope`` (id, or name of a held group); False when
        not a member."""
        gid = self._held(await self._groups_of(identity), scope)
        if gid is None:
            return False
        await self._membership(gid, identity.id, present=False)
        self._verify(gid not in await self._groups_of(identity), f"group {gid} revoke")
        log.info("elevation.scope_revoked", provider=self.name, identity=identity.id,
                 scope=scope, group=gid, action_id=action_id)
        return True

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "add_groups": self._undo_groups,
            "unsuspend": self._undo_suspend,
            "unrotate": self._undo_rotate,
        })
