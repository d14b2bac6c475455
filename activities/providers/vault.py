"""OpenBao / HashiCorp Vault adapter (hvac): identity entities and AppRoles.

Identity ids: ``approle/<role name>`` is an AppRole (mount ``options.approle_mount``,
default ``approle``); ``entity/name/<name>`` an identity entity by name; anything else an
entity id.

- reduce_scope (entity): remove policies from the entity (params ``policies``, default
  all). Undo adds them back, keeping any added since.
- force_reauth (entity): revoke every token of the entity by accessor (found by scanning
  token accessors; ``options.max_token_scan``) and revoke leases by prefix (params
  ``lease_prefixes``, default each alias's ``auth/<mount>/login/<name>``). Irreversible:
  revoked tokens and leases are gone.
- rotate (AppRole): generate a new secret-id and destroy the old one (params
  ``secret_id_accessor``). AppRole secret-ids cannot be deactivated, only destroyed, so
  rotation is irreversible and says so; the new secret-id goes to
  ``options.secret_drop_dir`` or is discarded, never into a result or log.
- revoke (entity): ``disabled=true`` (tokens of a disabled entity stop working). Undo sets
  ``disabled=false``.

Elevation (``grant_scope``/``revoke_scope``, entities only): the scope is a policy name,
added to or removed from the entity's policies (the others are kept). Tokens already issued
pick up entity policies at request time, so the grant and the revoke take effect at once.

The playbook's ``detach_policies`` and ``only_new_grants``/``new_grants`` choose policies too.

hvac is synchronous; calls run in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from activities.providers._common import (
    SecretDrop,
    action_result,
    dispatch_undo,
    issued_earlier,
    named_secret,
    refuse_credential_kind,
    refuse_credential_target,
    undo_result,
    wanted,
)
from activities.providers._credentials import credential
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityRef, UndoSpec

T = TypeVar("T")
log = get_logger(__name__)
_TRANSIENT = (hvac.exceptions.RateLimitExceeded, hvac.exceptions.InternalServerError,
              hvac.exceptions.VaultDown, hvac.exceptions.BadGateway)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    lines = [ln.strip(" *\t") for ln in text if ln.strip() and "error occurred" not in ln]
    return lines[0] if lines else type(err).__name__


class VaultProvider:
    def __init__(self, name: str, read_client: hvac.Client, action_client: hvac.Client, *,
                 approle_mount: str = "approle", max_token_scan: int = 5000,
                 secret_drop: SecretDrop | None = None) -> None:
        self.name = name
        self._read = read_client
        self._write = action_client
        self._approle_mount = approle_mount
        self._max_scan = max_token_scan
        self._drop = secret_drop or SecretDrop(None)

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings
                      ) -> VaultProvider:
        opts = conf.options
        url = opts.get("url")
        if not url:
            raise PermanentProviderError("options.url is required", provider=name,
                                         code="Config")

        def client(purpose: Any) -> hvac.Client:
            return hvac.Client(
                url=str(url), namespace=opts.get("namespace"),
                token=credential(conf, purpose, "token", provider=name, env="VAULT_TOKEN"),
                verify=opts.get("verify", True), timeout=int(opts.get("timeout", 20)))

        return cls(name, client("read"), client("action"),
                   approle_mount=str(opts.get("approle_mount", "approle")),
                   max_token_scan=int(opts.get("max_token_scan", 5000)),
                   secret_drop=SecretDrop(opts.get("secret_drop_dir")))

    async def aclose(self) -> None:
        for c in (self._read, self._write):
            await asyncio.to_thread(c.adapter.close)

    # ------------------------------------------------------------------ plumbing

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, missing_ok: bool = False,
                    gone_ok: bool = False, **kwargs: Any) -> T | None:
        """One hvac call. ``missing_ok``: 404 means None; ``gone_ok``: 400 too (revoked)."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except hvac.exceptions.InvalidRequest as err:
            if gone_ok:
                return None
            raise PermanentProviderError(f"{what}: {_first_line(err)}", provider=self.name,
                                         status=400, code="InvalidRequest") from None
        except hvac.exceptions.InvalidPath as err:
            if missing_ok:
                return None
            raise PermanentProviderError(f"{what}: {_first_line(err)}", provider=self.name,
                                         status=404, code="InvalidPath") from None
        except _TRANSIENT as err:
            raise TransientProviderError(
                f"{what}: {_first_line(err)}", provider=self.name,
                status=getattr(err, "status_code", None) or None, code=type(err).__name__,
                retry_after=1.0) from None
        except hvac.exceptions.VaultError as err:
            raise PermanentProviderError(f"{what}: {_first_line(err)}", provider=self.name,
                                         code=type(err).__name__) from None
        except requests.exceptions.RequestException as err:
            raise TransientProviderError(f"{what}: cannot reach {self.name} "
                                         f"({type(err).__name__})", provider=self.name,
                                         code=type(err).__name__) from None

    async def _must(self, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await self._call(what, fn, *args, **kw)

    def _approle(self, identity: IdentityRef) -> str | None:
        return identity.id.split("/", 1)[1] if identity.id.startswith("approle/") else None

    async def _entity(self, identity: IdentityRef) -> dict[str, Any]:
        ident = identity.id
        if ident.startswith("entity/name/"):
            got = await self._must("read entity", self._read.secrets.identity.read_entity_by_name,
                                   ident[len("entity/name/"):])
        else:
            got = await self._must("read entity", self._read.secrets.identity.read_entity,
                                   ident.removeprefix("entity/"))
        data: dict[str, Any] = got["data"]
        return data

    def _unsupported(self, what: str) -> PermanentProviderError:
        return PermanentProviderError(what, provider=self.name, code="Unsupported")

    # ------------------------------------------------------------------ reads

    async def _entity_tokens(self, entity_id: str) -> list[str]:
        listed = await self._call("list token accessors",
                                  self._read.auth.token.list_accessors, missing_ok=True)
        keys: list[str] = (listed or {}).get("data", {}).get("keys", [])[: self._max_scan]
        found = []
        for accessor in keys:
            info = await self._call("lookup accessor", self._read.auth.token.lookup_accessor,
                                    accessor, gone_ok=True)  # None: revoked since the list
            if info is not None and info["data"].get("entity_id") == entity_id:
                found.append(accessor)
        return sorted(found)

    def _lease_prefixes(self, entity: dict[str, Any], params: dict[str, Any]) -> list[str]:
        if params.get("lease_prefixes") is not None:
            return [str(p).strip("/") for p in params["lease_prefixes"]]
        return [f"{a['mount_path'].rstrip('/')}/login/{a['name']}"
                for a in entity.get("aliases") or [] if a.get("mount_type") != "approle"]

    async def _leases(self, prefixes: list[str]) -> list[str]:
        leases = []
        for prefix in prefixes:
            got = await self._call("list leases", self._read.sys.list_leases, prefix,
                                   missing_ok=True)
            keys = (got or {}).get("data", {}).get("keys", [])
            leases += [f"{prefix}/{k}" for k in keys if not k.endswith("/")]
        return sorted(leases)

    async def _entity_state(self, entity: dict[str, Any],
                            prefixes: list[str] | None = None) -> dict[str, Any]:
        return {
            "entity_id": entity["id"],
            "name": entity.get("name"),
            "disabled": bool(entity.get("disabled")),
            "policies": sorted(entity.get("policies") or []),
            "token_accessors": await self._entity_tokens(entity["id"]),
            "leases": await self._leases(prefixes if prefixes is not None
                                         else self._lease_prefixes(entity, {})),
        }

    async def _secret_id_accessors(self, role: str) -> list[str]:
        got = await self._call("list secret-id accessors",
                               self._read.auth.approle.list_secret_id_accessors, role,
                               mount_point=self._approle_mount, missing_ok=True)
        return sorted((got or {}).get("data", {}).get("keys", []))

    async def _approle_state(self, role: str) -> dict[str, Any]:
        info = await self._must("read approle", self._read.auth.approle.read_role, role,
                                mount_point=self._approle_mount)
        return {
            "role": role,
            "token_policies": sorted(info["data"].get("token_policies") or []),
            "secret_id_accessors": await self._secret_id_accessors(role),
        }

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        role = self._approle(identity)
        if role is not None:
            return await self._approle_state(role)
        return await self._entity_state(await self._entity(identity))

    def _verify(self, ok: bool, what: str) -> None:
        if not ok:
            raise TransientProviderError(f"{what} not visible after the write; retry",
                                         provider=self.name, code="VerifyFailed", retry_after=1.0)

    async def _update_entity(self, entity_id: str, **fields: Any) -> None:
        await self._must("update entity", self._write.secrets.identity.update_entity, entity_id,
                         **fields)

    # ------------------------------------------------------------------ reduce_scope

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        if self._approle(identity) is not None:
            raise self._unsupported("reduce_scope works on identity entities, not AppRoles")
        entity = await self._entity(identity)
        before = await self._entity_state(entity)
        names = wanted(params, "policies", "detach_policies")
        removed = [p for p in before["policies"] if names is None or p in names]
        if not removed:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before, message="no matching policies")
        keep = [p for p in before["policies"] if p not in removed]
        await self._update_entity(entity["id"], policies=keep)
        after = await self._entity_state(await self._entity(identity))
        self._verify(not set(removed) & set(after["policies"]), "policy removal")
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=identity.id, policies=len(removed))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"removed {len(removed)} entity policies",
            undo=UndoSpec(action=Action.reduce_scope,
                          params={"op": "restore_policies", "policies": removed},
                          description="add the removed policies back"))

    async def _undo_policies(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        entity = await self._entity(original.identity)
        before = await self._entity_state(entity)
        missing = [p for p in original.undo.params["policies"] if p not in before["policies"]]
        if missing:
            await self._update_entity(entity["id"],
                                      policies=sorted(before["policies"] + missing))
        after = (await self._entity_state(await self._entity(original.identity)) if missing
                 else before)
        self._verify(set(original.undo.params["policies"]) <= set(after["policies"]),
                     "policy restore")
        return undo_result(action_id, original, changed=bool(missing), before=before,
                           after=after)

    # ------------------------------------------------------------------ force_reauth

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        if self._approle(identity) is not None:
            raise self._unsupported("force_reauth works on identity entities; for an AppRole "
                                    "rotate its secret-id")
        entity = await self._entity(identity)
        prefixes = self._lease_prefixes(entity, params)
        before = await self._entity_state(entity, prefixes)
        message = ("tokens and leases revoked; revocation cannot be undone, the identity "
                   "logs in again to get new ones")
        if not before["token_accessors"] and not before["leases"]:
            return action_result(action_id, Action.force_reauth, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message="no live tokens or leases")
        for accessor in before["token_accessors"]:
            await self._call("revoke token", self._write.auth.token.revoke_accessor, accessor,
                             gone_ok=True)
        for prefix in prefixes:
            await self._call("revoke lease prefix", self._write.sys.revoke_prefix, prefix,
                             missing_ok=True)
        after = await self._entity_state(entity, prefixes)
        self._verify(not after["token_accessors"] and not after["leases"], "token revocation")
        log.info("action.applied", provider=self.name, action="force_reauth",
                 action_id=action_id, identity=identity.id,
                 tokens=len(before["token_accessors"]), leases=len(before["leases"]))
        return action_result(action_id, Action.force_reauth, identity, changed=True,
                             before=before, after=after, irreversible=True, message=message)

    # ------------------------------------------------------------------ rotate

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        role = self._approle(identity)
        if role is None:
            raise self._unsupported("rotate works on AppRoles (id approle/<role>): entities "
                                    "hold no secret")
        refuse_credential_kind(self.name, identity, params, "secret_id")
        before = await self._approle_state(role)
        accessors: list[str] = before["secret_id_accessors"]
        resumed = issued_earlier(params, "secret_id_accessors", accessors)
        now = accessors
        if resumed is not None:
            # An earlier attempt generated `resumed` and lost the answer: finish that
            # rotation from the state before it, never generate a second secret-id.
            before = dict(params["_snapshot"])
            accessors = list(before["secret_id_accessors"])
        old = named_secret(params, "secret_id_accessor", accessors, self.name,
                           f"approle {role}")
        if old is None:
            if len(accessors) != 1:
                raise PermanentProviderError(
                    f"approle {role} has {len(accessors)} secret-ids; pass params."
                    "secret_id_accessor to choose the one to rotate", provider=self.name,
                    code="AmbiguousSecretId")
            old = accessors[0]
        if old not in accessors:
            return action_result(action_id, Action.rotate, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message=f"secret-id {old} is already destroyed")
        if resumed is not None:
            new, note = resumed, self._drop.delivered(self.name, role, resumed)
        else:
            made = await self._must("generate secret-id",
                                    self._write.auth.approle.generate_secret_id, role,
                                    mount_point=self._approle_mount)
            new = made["data"]["secret_id_accessor"]
            note = self._drop.deliver(self.name, role, new, made["data"]["secret_id"])
            del made
        if resumed is None or old in now:  # a resumed rotation may have destroyed it
            await self._must("destroy secret-id",
                             self._write.auth.approle.destroy_secret_id_accessor,
                             role, old, mount_point=self._approle_mount)
        after = await self._approle_state(role)
        self._verify(old not in after["secret_id_accessors"]
                     and new in after["secret_id_accessors"], "secret-id rotation")
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=identity.id, old=old, new=new)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before,
            after={**after, "new_secret_id_accessor": new}, irreversible=True,
            message=f"new secret-id {new}; old secret-id {old} destroyed. AppRole secret-ids "
                    f"cannot be deactivated, so this cannot be undone; {note}")

    # ------------------------------------------------------------------ revoke

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        if self._approle(identity) is not None:
            raise self._unsupported("revoke works on identity entities; for an AppRole "
                                    "rotate its secret-id")
        refuse_credential_target(self.name, identity, params)
        return await self._set_disabled(action_id, identity, True)

    async def _set_disabled(self, action_id: str, identity: IdentityRef,
                            disabled: bool) -> ActionResult:
        entity = await self._entity(identity)
        before = await self._entity_state(entity)
        if before["disabled"] is disabled:
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before,
                                 message=f"entity already disabled={disabled}")
        await self._update_entity(entity["id"], disabled=disabled)
        after = await self._entity_state(await self._entity(identity))
        self._verify(after["disabled"] is disabled, f"disabled={disabled}")
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=identity.id, disabled=disabled)
        return action_result(
            action_id, Action.revoke, identity, changed=True, before=before, after=after,
            message=f"entity disabled={disabled}",
            undo=UndoSpec(action=Action.revoke, params={"op": "enable"},
                          description="set disabled=false on the entity"))

    async def _undo_enable(self, action_id: str, original: ActionResult) -> ActionResult:
        result = await self._set_disabled(action_id, original.identity, False)
        return undo_result(action_id, original, changed=result.changed, before=result.before,
                           after=result.after)

    # ------------------------------------------------------------------ elevation

    async def _entity_policies(self, identity: IdentityRef, scope: str
                               ) -> tuple[str, list[str]]:
        if self._approle(identity) is not None:
            raise self._unsupported("elevation grants entity policies; an AppRole's policies "
                                    "belong to its role configuration")
        if not scope or "," in scope or scope != scope.strip():
            raise PermanentProviderError(f"scope {scope!r} is not a policy name",
                                         provider=self.name, code="InvalidScope")
        entity = await self._entity(identity)
        return entity["id"], sorted(entity.get("policies") or [])

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        return scope in (snapshot.get("policies") or [])

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add policy ``scope`` to the entity's policies; False when it already has it."""
        entity_id, policies = await self._entity_policies(identity, scope)
        if scope in policies:
            return False
        await self._update_entity(entity_id, policies=sorted([*policies, scope]))
        _, after = await self._entity_policies(identity, scope)
        self._verify(scope in after, f"policy {scope} grant")
        log.info("elevation.scope_granted", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id)
        return True

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove policy ``scope`` from the entity, keeping the others; False when absent."""
        entity_id, policies = await self._entity_policies(identity, scope)
        if scope not in policies:
            return False
        await self._update_entity(entity_id, policies=[p for p in policies if p != scope])
        _, after = await self._entity_policies(identity, scope)
        self._verify(scope not in after, f"policy {scope} revoke")
        log.info("elevation.scope_revoked", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id)
        return True

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "restore_policies": self._undo_policies,
            "enable": self._undo_enable,
        })
