"""Microsoft Entra ID adapter (Microsoft Graph v1.0 over httpx).

Identity ids are directory object ids: kind ``user`` is a user, kind
``service_principal`` (or ``oauth_app``) a service principal.

- reduce_scope: remove direct memberships of assigned groups
  (``DELETE /groups/{g}/members/{id}/$ref``; dynamic groups cannot be edited and are left)
  and delete app role assignments (``DELETE …/appRoleAssignments/{a}``). Params ``groups``
  (ids or display names) and ``app_roles`` (``true``/``false`` or resource ids) choose;
  default all of both. Undo re-adds members (``POST /groups/{g}/members/$ref``; 400 "added
  object references already exist" is "already") and re-posts the assignments (Graph
  gives them new ids, so snapshots compare ``resourceId:appRoleId``).
- force_reauth (user): ``POST /users/{id}/revokeSignInSessions``. Irreversible.
- revoke: ``PATCH accountEnabled=false`` on the user or service principal; undo ``true``.
- rotate (service principal): ``addPassword`` then ``removePassword`` of the old key
  (params ``key_id``). Removal has no undo, so rotation is irreversible and says so; the
  new ``secretText`` goes to ``options.secret_drop_dir`` or is discarded.

Elevation (``grant_scope``/``revoke_scope``): the scope is a group object id; the member is
added with ``POST /groups/{g}/members/$ref`` (400 "already exist" → False) and removed with
``DELETE /groups/{g}/members/{id}/$ref`` (404 → False), after reading ``memberOf``. A held
group may also be named by its displayName; a grant needs the id (no group search).

The playbook's ``remove_groups`` and ``only_new_grants``/``new_grants`` choose groups
(and, for ``only_new_grants``, app roles by resource id) too.

Credentials: ``token`` (a bearer token) or ``tenant_id``/``client_id``/``client_secret``
for the client-credentials flow, separately for read and action. 429/503 with
``Retry-After`` → ``TransientProviderError(retry_after)``.
"""

from __future__ import annotations

import time
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
from activities.providers._credentials import Purpose, credential
from activities.providers._http import HttpApi, retry_after_header, seg
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityKind, IdentityRef, UndoSpec

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
log = get_logger(__name__)


def graph_error(response: httpx.Response) -> tuple[str | None, str]:
    try:
        err = response.json().get("error", {})
    except ValueError:
        return None, response.reason_phrase
    return (err.get("code"), str(err.get("message", ""))) if isinstance(err, dict) \
        else (None, response.reason_phrase)


class _TokenSource:
    """A static bearer token, or client credentials exchanged for one and cached."""

    def __init__(self, name: str, conf: ProviderSettings, purpose: Purpose,
                 login_url: str) -> None:
        self._name = name
        self._conf = conf
        self._purpose = purpose
        self._login = login_url.rstrip("/")
        self._token: str | None = None
        self._expires = 0.0

    async def headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        static = credential(self._conf, self._purpose, "token", provider=self._name)
        if static:
            return {"Authorization": f"Bearer {static}"}
        if self._token is None or time.monotonic() > self._expires:
            await self._fetch(client)
        return {"Authorization": f"Bearer {self._token}"}

    async def _fetch(self, client: httpx.AsyncClient) -> None:
        def need(key: str) -> str:
            value = credential(self._conf, self._purpose, key, provider=self._name)
            if not value:
                raise PermanentProviderError(
                    f"missing {self._purpose} credential {key!r} (or set 'token')",
                    provider=self._name, code="CredentialMissing")
            return value

        tenant = need("tenant_id")
        try:
            r = await client.post(f"{self._login}/{tenant}/oauth2/v2.0/token", data={
                "grant_type": "client_credentials", "client_id": need("client_id"),
                "client_secret": need("client_secret"),
                "scope": "https://graph.microsoft.com/.default"})
        except httpx.TransportError as err:
            raise TransientProviderError(f"token endpoint unreachable ({type(err).__name__})",
                                         provider=self._name, code=type(err).__name__) from None
        if r.status_code != 200:
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") \
                else {}
            cls = TransientProviderError if r.status_code >= 500 or r.status_code == 429 \
                else PermanentProviderError
            raise cls(f"token request refused: {body.get('error', r.reason_phrase)}",
                      provider=self._name, status=r.status_code, code=body.get("error"),
                      retry_after=retry_after_header(r))
        body = r.json()
        self._token = body["access_token"]
        self._expires = time.monotonic() + float(body.get("expires_in", 3600)) - 120


class EntraProvider:
    def __init__(self, name: str, api: HttpApi, secret_drop: SecretDrop | None = None) -> None:
        self.name = name
        self._api = api
        self._drop = secret_drop or SecretDrop(None)
        self._done = DoneActions()

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings,
                      transport: httpx.AsyncBaseTransport | None = None) -> EntraProvider:
        opts = conf.options
        login = str(opts.get("login_url", LOGIN))
        sources = {False: _TokenSource(name, conf, "read", login),
                   True: _TokenSource(name, conf, "action", login)}
        api: HttpApi

        async def auth(write: bool) -> dict[str, str]:
            return await sources[write].headers(api.client)

        api = HttpApi(name, str(opts.get("graph_url", GRAPH)), read_headers={},
                      action_headers={}, retry_after=retry_after_header,
                      error_code=graph_error, timeout=float(opts.get("timeout", 20)),
                      transport=transport, auth=auth)
        return cls(name, api, SecretDrop(opts.get("secret_drop_dir")))

    async def aclose(self) -> None:
        await self._api.aclose()

    # ------------------------------------------------------------------ reads

    @staticmethod
    def _collection(identity: IdentityRef) -> str:
        return "users" if identity.kind is IdentityKind.user else "servicePrincipals"

    async def _list(self, path: str, what: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = path
        query: dict[str, Any] | None = params or None
        while url:
            body = (await self._api.request("GET", url, what=what, params=query)).json()
            items += body.get("value", [])
            url = body.get("@odata.nextLink")
            query = None
        return items

    async def _state(self, identity: IdentityRef) -> dict[str, Any]:
        coll, oid = self._collection(identity), identity.id
        select = ("id,accountEnabled,signInSessionsValidFromDateTime" if coll == "users"
                  else "id,accountEnabled,passwordCredentials")
        obj = (await self._api.request("GET", f"/{coll}/{seg(oid)}", what=f"read {coll} {oid}",
                                       params={"$select": select})).json()
        groups = [g for g in await self._list(f"/{coll}/{seg(oid)}/memberOf", "list memberOf")
                  if g.get("@odata.type") == "#microsoft.graph.group"]
        roles = await self._list(f"/{coll}/{seg(oid)}/appRoleAssignments", "list app roles")
        state: dict[str, Any] = {
            "accountEnabled": obj.get("accountEnabled"),
            "groups": dict(sorted((g["id"], g.get("displayName", "")) for g in groups)),
            "dynamic_groups": sorted(g["id"] for g in groups
                                     if "DynamicMembership" in (g.get("groupTypes") or [])),
            "app_roles": sorted(f"{a['resourceId']}:{a['appRoleId']}" for a in roles),
        }
        if coll == "users":
            state["signInSessionsValidFromDateTime"] = obj.get("signInSessionsValidFromDateTime")
        else:
            state["password_key_ids"] = sorted(p["keyId"] for p in
                                               obj.get("passwordCredentials") or [])
        return state

    async def _assignments(self, identity: IdentityRef) -> list[dict[str, Any]]:
        coll = self._collection(identity)
        return await self._list(f"/{coll}/{seg(identity.id)}/appRoleAssignments", "list app roles")

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        return await self._state(identity)

    def _verify(self, ok: bool, what: str) -> None:
        if not ok:
            raise TransientProviderError(f"{what} not visible after the write (directory "
                                         "replication); retry", provider=self.name,
                                         code="VerifyFailed", retry_after=2.0)

    # ------------------------------------------------------------------ reduce_scope

    async def _remove_member(self, group: str, oid: str) -> bool:
        r = await self._api.request("DELETE", f"/groups/{seg(group)}/members/{seg(oid)}/$ref",
                                    write=True, expect=(204, 404),
                                    what=f"remove from group {group}")
        return r.status_code == 204

    async def _add_member(self, group: str, oid: str) -> bool:
        r = await self._api.request(
            "POST", f"/groups/{seg(group)}/members/$ref", write=True, expect=(204, 400),
            what=f"add to group {group}",
            json={"@odata.id": f"{GRAPH}/directoryObjects/{oid}"})
        if r.status_code == 400:
            code, message = graph_error(r)
            if "already exist" in message:
                return False
            raise PermanentProviderError(f"add to group {group}: {message}", provider=self.name,
                                         status=400, code=code)
        return True

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        coll, oid = self._collection(identity), identity.id
        before = await self._state(identity)
        names = wanted(params, "groups", "remove_groups")
        groups = [g for g, name in before["groups"].items()
                  if g not in before["dynamic_groups"]
                  and (names is None or g in names or name in names)]
        roles_param = params.get("app_roles")
        if roles_param is None:
            roles_param = (names if params.get("only_new_grants") and names is not None
                           else True)
        assignments = [a for a in await self._assignments(identity)
                       if roles_param is True
                       or (isinstance(roles_param, list) and a["resourceId"] in roles_param)]
        removed_groups = [g for g in groups if await self._remove_member(g, oid)]
        removed_roles = []
        for a in assignments:
            path = f"/{coll}/{seg(oid)}/appRoleAssignments/{seg(a['id'])}"
            r = await self._api.request("DELETE", path, write=True, expect=(204, 404),
                                        what="delete app role assignment")
            if r.status_code == 204:
                removed_roles.append({"resourceId": a["resourceId"],
                                      "appRoleId": a["appRoleId"]})
        if not removed_groups and not removed_roles:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before,
                                 message="no matching memberships or app roles")
        after = await self._state(identity)
        self._verify(not set(removed_groups) & set(after["groups"]), "group removal")
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=oid, groups=len(removed_groups),
                 app_roles=len(removed_roles))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"removed {len(removed_groups)} group memberships and "
                    f"{len(removed_roles)} app role assignments",
            undo=UndoSpec(action=Action.reduce_scope,
                          params={"op": "restore_scope", "groups": removed_groups,
                                  "app_roles": removed_roles},
                          description="re-add memberships, re-post app role assignments"))

    async def _undo_scope(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        identity = original.identity
        coll, oid = self._collection(identity), identity.id
        before = await self._state(identity)
        changed = False
        for g in original.undo.params["groups"]:
            changed = await self._add_member(g, oid) or changed
        for role in original.undo.params["app_roles"]:
            if f"{role['resourceId']}:{role['appRoleId']}" in before["app_roles"]:
                continue
            await self._api.request("POST", f"/{coll}/{seg(oid)}/appRoleAssignments", write=True,
                                    expect=(201,), what="re-post app role assignment",
                                    json={"principalId": oid, **role})
            changed = True
        after = await self._state(identity) if changed else before
        self._verify(set(original.undo.params["groups"]) <= set(after["groups"]),
                     "membership restore")
        return undo_result(action_id, original, changed=changed, before=before, after=after)

    # ------------------------------------------------------------------ force_reauth

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        if identity.kind is not IdentityKind.user:
            raise PermanentProviderError("revokeSignInSessions exists for users only; for a "
                                         "service principal rotate or disable it",
                                         provider=self.name, code="Unsupported")
        repeat = self._done.repeat(action_id)
        if repeat is not None:
            return repeat
        before = await self._state(identity)
        since = snapshot_before(params, "signInSessionsValidFromDateTime")
        if since is not None and before["signInSessionsValidFromDateTime"] != since:
            # The intent's snapshot shows an older revocation time: an earlier attempt of
            # this action revoked them; revoking again would end sessions begun since.
            done = action_result(action_id, Action.force_reauth, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message="sessions were already revoked by this action")
            self._done.add(done)
            return done
        await self._api.request("POST", f"/users/{seg(identity.id)}/revokeSignInSessions",
                                write=True, expect=(200,), what="revokeSignInSessions")
        after = await self._state(identity)
        log.info("action.applied", provider=self.name, action="force_reauth",
                 action_id=action_id, identity=identity.id)
        result = action_result(
            action_id, Action.force_reauth, identity, changed=True, before=before, after=after,
            irreversible=True,
            message="refresh tokens and session cookies invalidated; cannot be undone, the "
                    "user signs in again")
        self._done.add(result)
        return result

    # ------------------------------------------------------------------ revoke

    async def _set_enabled(self, identity: IdentityRef, enabled: bool) -> None:
        coll = self._collection(identity)
        await self._api.request("PATCH", f"/{coll}/{seg(identity.id)}", write=True, expect=(204,),
                                what=f"set accountEnabled={enabled}",
                                json={"accountEnabled": enabled})

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        refuse_credential_target(self.name, identity, params)
        before = await self._state(identity)
        if before["accountEnabled"] is False:
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before, message="already disabled")
        await self._set_enabled(identity, False)
        after = await self._state(identity)
        self._verify(after["accountEnabled"] is False, "accountEnabled=false")
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=identity.id)
        return action_result(
            action_id, Action.revoke, identity, changed=True, before=before, after=after,
            message="accountEnabled=false",
            undo=UndoSpec(action=Action.revoke, params={"op": "enable"},
                          description="set accountEnabled=true"))

    async def _undo_enable(self, action_id: str, original: ActionResult) -> ActionResult:
        before = await self._state(original.identity)
        changed = before["accountEnabled"] is False
        if changed:
            await self._set_enabled(original.identity, True)
        after = await self._state(original.identity) if changed else before
        self._verify(after["accountEnabled"] is True, "accountEnabled=true")
        return undo_result(action_id, original, changed=changed, before=before, after=after)

    # ------------------------------------------------------------------ rotate

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        if identity.kind is IdentityKind.user:
            raise PermanentProviderError("rotate works on service principals; a user's "
                                         "password reset is for a human to start",
                                         provider=self.name, code="Unsupported")
        refuse_credential_kind(self.name, identity, params, "client_secret")
        sp = identity.id
        before = await self._state(identity)
        keys: list[str] = before["password_key_ids"]
        resumed = issued_earlier(params, "password_key_ids", keys)
        now_keys = keys
        if resumed is not None:
            # An earlier attempt added `resumed` and lost the answer: finish that rotation
            # from the state before it, never add a second password.
            before = dict(params["_snapshot"])
            keys = list(before["password_key_ids"])
        old = named_secret(params, "key_id", keys, self.name, f"service principal {sp}")
        if old is None:
            if len(keys) != 1:
                raise PermanentProviderError(
                    f"service principal {sp} has {len(keys)} passwords; pass params.key_id",
                    provider=self.name, code="AmbiguousKey")
            old = keys[0]
        if old not in keys:
            return action_result(action_id, Action.rotate, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message=f"password {old} is already removed")
        if resumed is not None:
            new, note = resumed, self._drop.delivered(self.name, sp, resumed)
        else:
            made = (await self._api.request(
                "POST", f"/servicePrincipals/{seg(sp)}/addPassword", write=True, expect=(200,),
                what="addPassword", json={"passwordCredential": {
                    "displayName": f"stanch rotation {action_id}"[:100]}},
            )).json()
            new = made["keyId"]
            note = self._drop.deliver(self.name, sp, new, made.get("secretText", ""))
            made.clear()
        if resumed is None or old in now_keys:  # a resumed rotation may have removed it
            await self._api.request("POST", f"/servicePrincipals/{seg(sp)}/removePassword",
                                    write=True, expect=(204,), what="removePassword",
                                    json={"keyId": old})
        after = await self._state(identity)
        self._verify(old not in after["password_key_ids"] and new in after["password_key_ids"],
                     "password rotation")
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=sp, old=old, new=new)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before,
            after={**after, "new_key_id": new}, irreversible=True,
            message=f"new password {new}; old password {old} removed. removePassword has no "
                    f"undo, so this cannot be undone; {note}")

    # ------------------------------------------------------------------ elevation

    async def _groups_of(self, identity: IdentityRef) -> dict[str, str]:
        coll, oid = self._collection(identity), identity.id
        groups = await self._list(f"/{coll}/{seg(oid)}/memberOf", "list memberOf")
        return {g["id"]: g.get("displayName", "") for g in groups
                if g.get("@odata.type") == "#microsoft.graph.group"}

    @staticmethod
    def _held(groups: dict[str, str], scope: str) -> str | None:
        """The held group a scope names: its id, or its displayName when exactly one matches."""
        if scope in groups:
            return scope
        named = [gid for gid, name in groups.items() if name == scope]
        return named[0] if len(named) == 1 else None

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        return self._held(snapshot.get("groups") or {}, scope) is not None

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add the object to group ``scope`` (a group id); False when already a member."""
        if not scope or "/" in scope:
            raise PermanentProviderError(f"scope {scope!r} is not a group object id",
                                         provider=self.name, code="InvalidScope")
        if self._held(await self._groups_of(identity), scope) is not None:
            return False
        added = await self._add_member(scope, identity.id)  # 400 "already exist" → False
        self._verify(scope in await self._groups_of(identity), f"group {scope} grant")
        log.info("elevation.scope_granted", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id, changed=added)
        return added

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove the object from group ``scope`` (id, or displayName of a held group);
        False when not a member."""
        gid = self._held(await self._groups_of(identity), scope)
        if gid is None:
            return False
        removed = await self._remove_member(gid, identity.id)  # 404 → already gone
        self._verify(gid not in await self._groups_of(identity), f"group {gid} revoke")
        log.info("elevation.scope_revoked", provider=self.name, identity=identity.id,
                 scope=scope, group=gid, action_id=action_id, changed=removed)
        return removed

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "restore_scope": self._undo_scope,
            "enable": self._undo_enable,
        })
