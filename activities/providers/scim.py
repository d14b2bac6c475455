"""SCIM 2.0 adapter (RFC 7643/7644) over httpx.

- reduce_scope: PATCH each Group, ``remove`` path ``members[value eq "<user id>"]``
  (params ``groups``: group ids or display names, default all). The user's member entry
  (``display``, ``type``) is captured first, and undo adds back exactly that entry.
- revoke: PATCH the User ``active=false``. Undo sets ``active=true``.
- force_reauth and rotate do not exist in SCIM (sessions and secrets live in the IdP's own
  API); they fail permanently with that reason.

Elevation (``grant_scope``/``revoke_scope``): the scope is a group, by id or exact
``displayName``; membership is added or removed with the same If-Match PATCH, and False
means the user already was (grant) or was not (revoke) a member.

The playbook's ``remove_groups`` and ``only_new_grants``/``new_grants`` choose groups too.

Memberships are read with ``GET /Groups?filter=members.value eq "<id>"`` because servers
need not fill ``User.groups``. Every PATCH sends ``If-Match`` with the resource's ETag when
the server offers one; on 412 the adapter re-reads, and retries once if the change is still
needed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from activities.providers._common import (
    action_result,
    dispatch_undo,
    refuse_credential_target,
    undo_result,
    wanted,
)
from activities.providers._credentials import credential
from activities.providers._http import HttpApi
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityRef, UndoSpec

PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"
log = get_logger(__name__)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ScimProvider:
    def __init__(self, name: str, api: HttpApi) -> None:
        self.name = name
        self._api = api

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings
                      ) -> ScimProvider:
        base = conf.options.get("base_url")
        if not base:
            raise PermanentProviderError("options.base_url is required", provider=name,
                                         code="Config")

        def bearer(purpose: Any) -> dict[str, str]:
            token = credential(conf, purpose, "token", provider=name)
            return {"Authorization": f"Bearer {token}"} if token else {}

        api = HttpApi(name, str(base), read_headers=bearer("read"),
                      action_headers=bearer("action"),
                      timeout=float(conf.options.get("timeout", 20)),
                      default_headers={"Accept": SCIM_JSON})
        return cls(name, api)

    async def aclose(self) -> None:
        await self._api.aclose()

    # ------------------------------------------------------------------ reads

    async def _user(self, user_id: str) -> httpx.Response:
        return await self._api.request("GET", f"/Users/{user_id}", what=f"read user {user_id}")

    async def _groups(self, user_id: str) -> dict[str, str]:
        groups: dict[str, str] = {}
        start = 1
        while True:
            r = await self._api.request(
                "GET", "/Groups", what="list groups",
                params={"filter": f"members.value eq {_quote(user_id)}",
                        "attributes": "displayName", "startIndex": start, "count": 100})
            body = r.json()
            resources = body.get("Resources", [])
            for g in resources:
                groups[g["id"]] = g.get("displayName", "")
            start += len(resources)
            if not resources or start > int(body.get("totalResults", 0)):
                return groups

    async def _state(self, user_id: str) -> dict[str, Any]:
        user = (await self._user(user_id)).json()
        return {
            "userName": user.get("userName"),
            "active": bool(user.get("active", True)),
            "groups": dict(sorted((await self._groups(user_id)).items())),
        }

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        return await self._state(identity.id)

    # ------------------------------------------------------------------ writes

    async def _patch(self, path: str, operations: list[dict[str, Any]], etag: str | None,
                     what: str) -> httpx.Response:
        headers = {"Content-Type": SCIM_JSON}
        if etag:
            headers["If-Match"] = etag
        return await self._api.request(
            "PATCH", path, write=True, expect=(200, 204, 412), what=what, headers=headers,
            json={"schemas": [PATCH_OP], "Operations": operations})

    async def _patch_if_needed(self, path: str, needed: Any, operations: list[dict[str, Any]],
                               what: str) -> bool:
        """Read, PATCH with If-Match; on 412 re-read and retry once. True when it wrote."""
        for _ in range(2):
            current = await self._api.request("GET", path, what=what)
            if not needed(current.json()):
                return False
            r = await self._patch(path, operations, current.headers.get("ETag"), what)
            if r.status_code != 412:
                return True
            log.info("scim.precondition_failed", provider=self.name, path=path)
        raise TransientProviderError(f"{what}: resource kept changing (412 twice)",
                                     provider=self.name, status=412, code="PreconditionFailed",
                                     retry_after=1.0)

    async def _member_entries(self, user_id: str, group_ids: list[str]
                              ) -> dict[str, dict[str, Any]]:
        """The user's member entry in each group as the server holds it (``display``,
        ``type`` …), so undo can put back exactly that, not a bare ``{"value": id}``."""
        entries: dict[str, dict[str, Any]] = {}
        for gid in group_ids:
            group = (await self._api.request("GET", f"/Groups/{gid}",
                                             what=f"read group {gid}")).json()
            found = next((m for m in group.get("members") or []
                          if m.get("value") == user_id), None)
            entries[gid] = {k: v for k, v in (found or {"value": user_id}).items()
                            if k != "$ref"}  # $ref is the server's to compute
        return entries

    async def _set_members(self, user_id: str, group_ids: list[str], present: bool,
                           entries: dict[str, dict[str, Any]] | None = None) -> list[str]:
        changed = []
        for gid in group_ids:
            def needed(group: dict[str, Any]) -> bool:
                ids = {m.get("value") for m in group.get("members", []) or []}
                return (user_id in ids) is not present
            entry = (entries or {}).get(gid) or {"value": user_id}
            op = ({"op": "add", "path": "members", "value": [entry]} if present
                  else {"op": "remove", "path": f"members[value eq {_quote(user_id)}]"})
            what = f"{'add' if present else 'remove'} {user_id} in group {gid}"
            if await self._patch_if_needed(f"/Groups/{gid}", needed, [op], what):
                changed.append(gid)
        return changed

    async def _set_active(self, user_id: str, active: bool) -> bool:
        return await self._patch_if_needed(
            f"/Users/{user_id}", lambda u: bool(u.get("active", True)) is not active,
            [{"op": "replace", "path": "active", "value": active}],
            f"set active={active} on {user_id}")

    def _verify(self, ok: bool, what: str) -> None:
        if not ok:
            raise TransientProviderError(f"{what} not visible after the write; retry",
                                         provider=self.name, code="VerifyFailed", retry_after=1.0)

    # ------------------------------------------------------------------ actions

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        before = await self._state(identity.id)
        names = wanted(params, "groups", "remove_groups")
        groups = [gid for gid, display in before["groups"].items()
                  if names is None or gid in names or display in names]
        entries = await self._member_entries(identity.id, groups)
        removed = await self._set_members(identity.id, groups, present=False)
        if not removed:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before, message="no matching memberships")
        after = await self._state(identity.id)
        self._verify(not set(removed) & set(after["groups"]), "membership removal")
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=identity.id, groups=len(removed))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"removed from {len(removed)} groups",
            undo=UndoSpec(action=Action.reduce_scope, params={
                "op": "add_members", "groups": removed,
                "members": {gid: entries[gid] for gid in removed}},
                          description="add the user back to the groups"))

    async def _undo_members(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        user_id = original.identity.id
        before = await self._state(user_id)
        added = await self._set_members(user_id, list(original.undo.params["groups"]),
                                        present=True,
                                        entries=original.undo.params.get("members"))
        after = await self._state(user_id) if added else before
        self._verify(set(original.undo.params["groups"]) <= set(after["groups"]),
                     "membership restore")
        return undo_result(action_id, original, changed=bool(added), before=before, after=after)

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        refuse_credential_target(self.name, identity, params)
        before = await self._state(identity.id)
        if not await self._set_active(identity.id, False):
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before, message="already inactive")
        after = await self._state(identity.id)
        self._verify(after["active"] is False, "active=false")
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=identity.id)
        return action_result(
            action_id, Action.revoke, identity, changed=True, before=before, after=after,
            message="set active=false",
            undo=UndoSpec(action=Action.revoke, params={"op": "activate"},
                          description="set active=true"))

    async def _undo_activate(self, action_id: str, original: ActionResult) -> ActionResult:
        user_id = original.identity.id
        before = await self._state(user_id)
        changed = await self._set_active(user_id, True)
        after = await self._state(user_id) if changed else before
        self._verify(after["active"] is True, "active=true")
        return undo_result(action_id, original, changed=changed, before=before, after=after)

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        raise PermanentProviderError("SCIM has no sessions: use the identity provider's own "
                                     "API to revoke sessions", provider=self.name,
                                     code="Unsupported")

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        raise PermanentProviderError("SCIM cannot rotate credentials: use the identity "
                                     "provider's own API", provider=self.name,
                                     code="Unsupported")

    # ------------------------------------------------------------------ elevation

    async def _group_id(self, scope: str) -> str:
        """A scope names a group by id, else by its exact ``displayName``."""
        r = await self._api.request("GET", f"/Groups/{quote(scope, safe='')}",
                                    expect=(200, 400, 404), what=f"read group {scope}",
                                    params={"attributes": "displayName"})
        if r.status_code == 200:
            return scope
        r = await self._api.request("GET", "/Groups", what=f"find group {scope}",
                                    params={"filter": f"displayName eq {_quote(scope)}",
                                            "attributes": "displayName"})
        found = [g["id"] for g in r.json().get("Resources", [])
                 if g.get("displayName") == scope]
        if len(found) != 1:
            raise PermanentProviderError(
                f"scope {scope!r}: {'no' if not found else len(found)} groups with that id "
                "or displayName", provider=self.name,
                code="NoSuchGroup" if not found else "AmbiguousScope")
        return str(found[0])

    async def _scope_change(self, action_id: str, identity: IdentityRef, scope: str,
                            present: bool) -> bool:
        await self._user(identity.id)  # an unknown user is a permanent 404, not a no-op
        gid = await self._group_id(scope)
        if (gid in await self._groups(identity.id)) is present:
            return False
        changed = await self._set_members(identity.id, [gid], present=present)
        held = gid in await self._groups(identity.id)
        self._verify(held is present, f"{'grant' if present else 'revoke'} of group {gid}")
        log.info("elevation.scope_granted" if present else "elevation.scope_revoked",
                 provider=self.name, identity=identity.id, scope=scope, group=gid,
                 action_id=action_id, changed=bool(changed))
        return bool(changed)

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        groups: dict[str, str] = snapshot.get("groups") or {}
        return scope in groups or scope in groups.values()

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add the user to group ``scope`` (id or displayName); False when already a member."""
        return await self._scope_change(action_id, identity, scope, present=True)

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove the user from group ``scope``; False when not a member."""
        return await self._scope_change(action_id, identity, scope, present=False)

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "add_members": self._undo_members,
            "activate": self._undo_activate,
        })
