"""AWS IAM adapter (boto3): users, roles and access keys.

Identity ids: an IAM ARN (``arn:aws:iam::123456789012:user/alice``, ``…:role/deployer``), an
access key id (``AKIA…``, kind ``access_key``), or a bare name whose kind decides: ``user`` is
an IAM user, ``service_account``/``service_principal`` an IAM role.

- reduce_scope: detach managed policies and leave groups (params ``policies``/``groups``,
  lists, default all but AWSDenyAll), or attach ``AWSDenyAll`` with ``deny_all: true``.
  Undo re-attaches and re-joins, or detaches.
- force_reauth: inline deny ``AWSRevokeOlderSessions`` on ``aws:TokenIssueTime`` < now.
  Irreversible on purpose: removing it would revive stolen sessions.
- rotate: new access key, old one ``Inactive`` (the planner's ``credentials`` or
  ``access_key_id`` name it). No key is ever deleted: at the 2-key limit the old key is only
  deactivated and the result says which key a human must delete before a new one can be
  issued; with both keys already inactive it stops for a human. An old key already
  inactive (a credential revoke ran first) gets a replacement when there is room. Undo
  puts the old key back in its earlier status and deletes the new one. The new secret goes
  to ``options.secret_drop_dir`` (a 0600 file) or is discarded: never into a result or log.
- revoke: deactivate the named keys (the planner's ``credentials``, or the identity's own
  key); for the whole identity, deactivate every active key and attach ``AWSDenyAll``,
  which blocks console and API alike while keeping the login profile (roles: attach
  ``AWSDenyAll``). Undo reactivates exactly those keys and detaches ``AWSDenyAll``.

Elevation (``grant_scope``/``revoke_scope``): scope ``group:NAME`` (or a bare ``NAME``) joins
or leaves an IAM group (users only); ``policy:ARN`` attaches or detaches a managed policy on
a user or role. Both read first and return False when nothing needs changing.

Playbook params work too: ``remove_groups``/``detach_policies`` (names), ``only_new_grants``
with ``new_grants`` (just what the alert named), ``attach_deny_policy`` (= ``deny_all``).

boto3 is synchronous; calls run in a thread. Snapshots use the read session, writes the
action session (two sets of credentials when configured).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from activities.providers._common import (
    SecretDrop,
    action_result,
    dispatch_undo,
    issued_earlier,
    refuse_credential_kind,
    snapshot_before,
    undo_result,
    wanted,
)
from activities.providers._credentials import credential
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityKind, IdentityRef, UndoSpec

DENY_ALL_ARN = "arn:aws:iam::aws:policy/AWSDenyAll"
REVOKE_POLICY = "AWSRevokeOlderSessions"
_THROTTLING = {"Throttling", "ThrottlingException", "RequestLimitExceeded",
               "TooManyRequestsException", "RequestThrottled", "ServiceUnavailable"}
_THROTTLE_DELAY = 2.0
T = TypeVar("T")
log = get_logger(__name__)


@dataclass(frozen=True)
class _Principal:
    kind: str  # "user" | "role"
    name: str
    access_key_id: str | None = None


def _classify(provider: str, err: Exception, what: str) -> Exception:
    """botocore errors → our error types; the AWS error code is named, never a secret."""
    if isinstance(err, botocore.exceptions.ClientError):
        code = str(err.response.get("Error", {}).get("Code", "Unknown"))
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        msg = str(err.response.get("Error", {}).get("Message", ""))
        if code in _THROTTLING or (isinstance(status, int) and status >= 500):
            headers = err.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            retry_after = _float(headers.get("retry-after")) or _THROTTLE_DELAY
            return TransientProviderError(f"{what}: {msg or code}", provider=provider,
                                          status=status, code=code, retry_after=retry_after)
        return PermanentProviderError(f"{what}: {msg or code}", provider=provider,
                                      status=status, code=code)
    if isinstance(err, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError):
        return TransientProviderError(f"{what}: cannot reach IAM ({type(err).__name__})",
                                      provider=provider, code=type(err).__name__)
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return PermanentProviderError(f"{what}: no AWS credentials configured",
                                      provider=provider, code="NoCredentials")
    return err


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _code(err: botocore.exceptions.ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


class AwsIamProvider:
    """IAM through two boto3 clients: one for reads, one for writes."""

    def __init__(self, name: str, read_client: Any, action_client: Any,
                 secret_drop: SecretDrop | None = None) -> None:
        self.name = name
        self._read = read_client
        self._write = action_client
        self._drop = secret_drop or SecretDrop(None)

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings
                      ) -> AwsIamProvider:
        opts = conf.options
        cfg = Config(
            retries={"mode": "adaptive", "max_attempts": int(opts.get("max_attempts", 3))},
            connect_timeout=float(opts.get("connect_timeout", 5)),
            read_timeout=float(opts.get("read_timeout", 20)),
        )

        def client(purpose: Any) -> Any:
            session = boto3.session.Session(
                aws_access_key_id=credential(conf, purpose, "access_key_id", provider=name),
                aws_secret_access_key=credential(conf, purpose, "secret_access_key",
                                                 provider=name),
                aws_session_token=credential(conf, purpose, "session_token", provider=name),
                profile_name=opts.get(f"{purpose}_profile") or opts.get("profile"),
                region_name=opts.get("region", "us-east-1"),
            )
            return session.client("iam", endpoint_url=opts.get("endpoint_url"), config=cfg)

        return cls(name, client("read"), client("action"),
                   SecretDrop(opts.get("secret_drop_dir")))

    async def aclose(self) -> None:
        for c in (self._read, self._write):
            await asyncio.to_thread(c.close)

    # ------------------------------------------------------------------ plumbing

    async def _call(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as err:
            mapped = _classify(self.name, err, what)
            if mapped is err:
                raise
            raise mapped from None

    async def _maybe(self, what: str, fn: Callable[..., T], **kwargs: Any) -> T | None:
        """A call whose NoSuchEntity means "already gone"."""
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except botocore.exceptions.ClientError as err:
            if _code(err) == "NoSuchEntity":
                return None
            raise _classify(self.name, err, what) from None
        except Exception as err:
            mapped = _classify(self.name, err, what)
            if mapped is err:
                raise
            raise mapped from None

    async def _principal(self, identity: IdentityRef) -> _Principal:
        ident = identity.id
        if ident.startswith("arn:"):
            resource = ident.split(":", 5)[-1]
            kind, _, path_name = resource.partition("/")
            if kind not in ("user", "role"):
                raise PermanentProviderError(f"{ident}: not an IAM user or role ARN",
                                             provider=self.name, code="InvalidIdentity")
            return _Principal(kind, path_name.rsplit("/", 1)[-1])
        if identity.kind is IdentityKind.access_key or (
            len(ident) == 20 and ident[:4] in ("AKIA", "ASIA")
        ):
            found = await self._call("get_access_key_last_used",
                                     self._read.get_access_key_last_used, AccessKeyId=ident)
            user = found.get("UserName")
            if not user:
                raise PermanentProviderError(f"access key {ident} belongs to no IAM user",
                                             provider=self.name, code="NoSuchEntity")
            return _Principal("user", user, ident)
        if identity.kind is IdentityKind.user:
            return _Principal("user", ident)
        return _Principal("role", ident)

    # ------------------------------------------------------------------ reads

    async def _attached(self, p: _Principal) -> list[str]:
        fn = (self._read.list_attached_user_policies if p.kind == "user"
              else self._read.list_attached_role_policies)
        arg = {"UserName": p.name} if p.kind == "user" else {"RoleName": p.name}
        page = await self._call("list_attached_policies", fn, **arg)
        arns = [x["PolicyArn"] for x in page.get("AttachedPolicies", [])]
        while page.get("IsTruncated"):
            page = await self._call("list_attached_policies", fn, Marker=page["Marker"], **arg)
            arns += [x["PolicyArn"] for x in page.get("AttachedPolicies", [])]
        return sorted(arns)

    async def _inline(self, p: _Principal) -> list[str]:
        if p.kind == "user":
            page = await self._call("list_user_policies", self._read.list_user_policies,
                                    UserName=p.name)
        else:
            page = await self._call("list_role_policies", self._read.list_role_policies,
                                    RoleName=p.name)
        return sorted(page.get("PolicyNames", []))

    async def _groups(self, p: _Principal) -> list[str]:
        if p.kind != "user":
            return []
        page = await self._call("list_groups_for_user", self._read.list_groups_for_user,
                                UserName=p.name)
        return sorted(g["GroupName"] for g in page.get("Groups", []))

    async def _keys(self, p: _Principal) -> dict[str, str]:
        if p.kind != "user":
            return {}
        page = await self._call("list_access_keys", self._read.list_access_keys,
                                UserName=p.name)
        return {k["AccessKeyId"]: k["Status"] for k in page.get("AccessKeyMetadata", [])}

    async def _login_profile(self, p: _Principal) -> bool:
        if p.kind != "user":
            return False
        got = await self._maybe("get_login_profile", self._read.get_login_profile,
                                UserName=p.name)
        return got is not None

    async def _revocation_sid(self, p: _Principal) -> str | None:
        if p.kind == "user":
            got = await self._maybe("get_user_policy", self._read.get_user_policy,
                                    UserName=p.name, PolicyName=REVOKE_POLICY)
        else:
            got = await self._maybe("get_role_policy", self._read.get_role_policy,
                                    RoleName=p.name, PolicyName=REVOKE_POLICY)
        if got is None:
            return None
        doc = got["PolicyDocument"]
        if isinstance(doc, str):
            doc = json.loads(doc)
        statements = doc.get("Statement", [])
        return str(statements[0].get("Sid", "")) if statements else ""

    async def _state(self, p: _Principal) -> dict[str, Any]:
        # independent reads: run them side by side (boto3 clients are thread-safe)
        attached, inline, groups, keys, profile, sid = await asyncio.gather(
            self._attached(p), self._inline(p), self._groups(p), self._keys(p),
            self._login_profile(p), self._revocation_sid(p))
        return {
            "kind": p.kind,
            "name": p.name,
            "attached_policies": attached,
            "inline_policies": inline,
            "groups": groups,
            "access_keys": keys,
            "login_profile": profile,
            "session_revocation_sid": sid,
        }

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        p = await self._principal(identity)
        if p.kind == "user":
            await self._call("get_user", self._read.get_user, UserName=p.name)
        else:
            await self._call("get_role", self._read.get_role, RoleName=p.name)
        return await self._state(p)

    # ------------------------------------------------------------------ writes

    async def _attach(self, p: _Principal, arn: str) -> None:
        if p.kind == "user":
            await self._call("attach_user_policy", self._write.attach_user_policy,
                             UserName=p.name, PolicyArn=arn)
        else:
            await self._call("attach_role_policy", self._write.attach_role_policy,
                             RoleName=p.name, PolicyArn=arn)

    async def _detach(self, p: _Principal, arn: str) -> None:
        if p.kind == "user":
            await self._maybe("detach_user_policy", self._write.detach_user_policy,
                              UserName=p.name, PolicyArn=arn)
        else:
            await self._maybe("detach_role_policy", self._write.detach_role_policy,
                              RoleName=p.name, PolicyArn=arn)

    async def _set_key(self, p: _Principal, key_id: str, status: str) -> None:
        await self._call("update_access_key", self._write.update_access_key,
                         UserName=p.name, AccessKeyId=key_id, Status=status)

    def _verify(self, ok: bool, what: str, identity: IdentityRef) -> None:
        if not ok:
            raise TransientProviderError(
                f"{what} on {identity.id} not visible after the write (eventual consistency); "
                "retry", provider=self.name, code="VerifyFailed", retry_after=2.0)

    # ------------------------------------------------------------------ reduce_scope

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        p = await self._principal(identity)
        before = await self._state(p)
        if params.get("deny_all") or params.get("attach_deny_policy"):
            if DENY_ALL_ARN in before["attached_policies"]:
                return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                     before=before, after=before,
                                     message="AWSDenyAll already attached")
            await self._attach(p, DENY_ALL_ARN)
            after = await self._state(p)
            self._verify(DENY_ALL_ARN in after["attached_policies"], "attach AWSDenyAll",
                         identity)
            log.info("action.applied", provider=self.name, action="reduce_scope",
                     action_id=action_id, identity=identity.id, op="deny_all")
            return action_result(
                action_id, Action.reduce_scope, identity, changed=True, before=before,
                after=after, message="attached AWSDenyAll",
                undo=UndoSpec(action=Action.reduce_scope,
                              params={"op": "detach", "policies": [DENY_ALL_ARN]},
                              description="detach AWSDenyAll"))

        want_policies = wanted(params, "policies", "detach_policies")
        want_groups = wanted(params, "groups", "remove_groups")
        policies = [a for a in before["attached_policies"]
                    if (a in want_policies or a.rsplit("/", 1)[-1] in want_policies
                        if want_policies is not None else a != DENY_ALL_ARN)]
        groups = [g for g in before["groups"]
                  if (g in want_groups if want_groups is not None else True)]
        if not policies and not groups:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before,
                                 message="no matching policies or groups left")
        for arn in policies:
            await self._detach(p, arn)
        for group in groups:
            await self._maybe("remove_user_from_group", self._write.remove_user_from_group,
                              UserName=p.name, GroupName=group)
        after = await self._state(p)
        self._verify(not set(policies) & set(after["attached_policies"])
                     and not set(groups) & set(after["groups"]), "detach/leave", identity)
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=identity.id, policies=len(policies),
                 groups=len(groups))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"detached {len(policies)} policies, left {len(groups)} groups",
            undo=UndoSpec(action=Action.reduce_scope,
                          params={"op": "restore_scope", "policies": policies,
                                  "groups": groups},
                          description="re-attach the detached policies and re-join groups"))

    async def _undo_detach(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        p = await self._principal(original.identity)
        before = await self._state(p)
        arns = [a for a in original.undo.params["policies"] if a in before["attached_policies"]]
        for arn in arns:
            await self._detach(p, arn)
        after = await self._state(p) if arns else before
        self._verify(not set(arns) & set(after["attached_policies"]), "detach", original.identity)
        return undo_result(action_id, original, changed=bool(arns), before=before, after=after)

    async def _undo_restore_scope(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        p = await self._principal(original.identity)
        before = await self._state(p)
        arns = [a for a in original.undo.params["policies"]
                if a not in before["attached_policies"]]
        groups = [g for g in original.undo.params["groups"] if g not in before["groups"]]
        for arn in arns:
            await self._attach(p, arn)
        for group in groups:
            await self._call("add_user_to_group", self._write.add_user_to_group,
                             UserName=p.name, GroupName=group)
        after = await self._state(p) if arns or groups else before
        self._verify(set(arns) <= set(after["attached_policies"])
                     and set(groups) <= set(after["groups"]), "re-attach", original.identity)
        return undo_result(action_id, original, changed=bool(arns or groups), before=before,
                           after=after)

    # ------------------------------------------------------------------ force_reauth

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        p = await self._principal(identity)
        before = await self._state(p)
        sid = "Stanch" + hashlib.sha256(action_id.encode()).hexdigest()[:24]
        message = ("sessions issued before now are denied"
                   + ("; long-term access keys are unaffected (rotate or revoke them)"
                      if p.kind == "user" else ""))
        if before["session_revocation_sid"] == sid:
            return action_result(action_id, Action.force_reauth, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message="this revocation is already in place")
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Sid": sid, "Effect": "Deny", "Action": ["*"], "Resource": ["*"],
            "Condition": {"DateLessThan": {"aws:TokenIssueTime": now}},
        }]})
        if p.kind == "user":
            await self._call("put_user_policy", self._write.put_user_policy, UserName=p.name,
                             PolicyName=REVOKE_POLICY, PolicyDocument=doc)
        else:
            await self._call("put_role_policy", self._write.put_role_policy, RoleName=p.name,
                             PolicyName=REVOKE_POLICY, PolicyDocument=doc)
        after = await self._state(p)
        self._verify(after["session_revocation_sid"] == sid, REVOKE_POLICY, identity)
        log.info("action.applied", provider=self.name, action="force_reauth",
                 action_id=action_id, identity=identity.id)
        return action_result(
            action_id, Action.force_reauth, identity, changed=True, before=before,
            after={**after, "token_issue_time_before": now}, irreversible=True,
            message=message + ". Never auto-undone: removing the policy revives stolen "
                    "sessions")

    # ------------------------------------------------------------------ rotate

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        p = await self._principal(identity)
        refuse_credential_kind(self.name, identity, params, "access_key")
        if p.kind != "user":
            raise PermanentProviderError(f"{identity.id}: roles have no access keys to rotate",
                                         provider=self.name, code="Unsupported")
        before = await self._state(p)
        now_keys: dict[str, str] = before["access_keys"]
        keys = now_keys
        resumed = issued_earlier(params, "access_keys", now_keys)
        snap = snapshot_before(params, "access_keys")
        if resumed is not None or (isinstance(snap, dict) and set(snap) == set(now_keys)):
            # A retry: decide from the state before the first attempt (the intent snapshot),
            # so a key an earlier attempt created (`resumed`) or deactivated is not issued or
            # refused again; act only on what is still left to do.
            keys = dict(snap)
            before = dict(params["_snapshot"])
        old = self._rotation_source(p, keys, params)
        others_active = [k for k, s in keys.items() if k != old and s == "Active"]
        if keys[old] == "Inactive" and others_active:
            return action_result(action_id, Action.rotate, identity, changed=False,
                                 before=before, after=before,
                                 message=f"access key {old} is inactive and "
                                         f"{others_active[0]} is active")
        if resumed is None and len(keys) >= 2:
            return await self._rotate_at_limit(action_id, identity, p, before, old, now_keys)
        if resumed is not None:
            new_id, note = resumed, self._drop.delivered(self.name, p.name, resumed)
        else:
            created = await self._call("create_access_key", self._write.create_access_key,
                                       UserName=p.name)
            new_id = created["AccessKey"]["AccessKeyId"]
            note = self._drop.deliver(self.name, p.name, new_id,
                                      created["AccessKey"]["SecretAccessKey"])
            del created
        if now_keys.get(old) == "Active":
            await self._set_key(p, old, "Inactive")
        after = await self._state(p)
        self._verify(after["access_keys"].get(old) == "Inactive"
                     and after["access_keys"].get(new_id) == "Active", "rotate", identity)
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=identity.id, old_key=old, new_key=new_id)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before,
            after={**after, "new_access_key_id": new_id},
            message=f"new key {new_id} active, {old} inactive; {note}",
            undo=UndoSpec(action=Action.rotate,
                          params={"op": "unrotate", "old": old, "old_status": keys[old],
                                  "new": new_id},
                          description=f"{old} back to {keys[old]}, delete {new_id}"))

    def _rotation_source(self, p: _Principal, keys: dict[str, str],
                         params: dict[str, Any]) -> str:
        """The key to rotate: named by the step (the planner's ``credentials``, or
        ``access_key_id``), else the identity's own key, else the only active one."""
        named = params.get("access_key_id") or next(iter(params.get("credentials") or []),
                                                    None) or p.access_key_id
        if named is None:
            active = [k for k, s in keys.items() if s == "Active"]
            if len(active) != 1:
                raise PermanentProviderError(
                    f"user {p.name} has {len(active)} active access keys; pass params."
                    "access_key_id to choose the one to rotate",
                    provider=self.name, code="AmbiguousKey")
            named = active[0]
        if named not in keys:
            raise PermanentProviderError(f"access key {named} does not belong to user {p.name}",
                                         provider=self.name, code="NoSuchEntity")
        return str(named)

    async def _rotate_at_limit(self, action_id: str, identity: IdentityRef, p: _Principal,
                               before: dict[str, Any], old: str,
                               now_keys: dict[str, str]) -> ActionResult:
        """AWS allows two keys: no key is ever deleted to make room. An active old key is
        deactivated (contained, reversible) and no new key issued; otherwise a human must
        choose which key to delete."""
        keys: dict[str, str] = before["access_keys"]
        extra = next(k for k in keys if k != old)
        if keys[old] != "Active":
            raise PermanentProviderError(
                f"user {p.name} has 2 access keys ({old}, {extra}), both inactive; AWS allows "
                f"2. Stanch never deletes a key: delete one by hand, then retry",
                provider=self.name, code="LimitExceeded")
        if now_keys.get(old) == "Active":  # a retry finds it already deactivated
            await self._set_key(p, old, "Inactive")
        after = await self._state(p)
        self._verify(after["access_keys"].get(old) == "Inactive", "deactivate", identity)
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=identity.id, old_key=old, new_key=None)
        return action_result(
            action_id, Action.rotate, identity, changed=True, before=before, after=after,
            message=f"{old} deactivated; no new key issued: {p.name} is at the two-key limit "
                    f"and Stanch never deletes a key. Delete {extra} by hand to issue one",
            undo=UndoSpec(action=Action.rotate,
                          params={"op": "unrotate", "old": old, "old_status": "Active",
                                  "new": None},
                          description=f"reactivate {old}"))

    async def _undo_rotate(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        p = await self._principal(original.identity)
        old, new = original.undo.params["old"], original.undo.params.get("new")
        status = original.undo.params.get("old_status", "Active")
        before = await self._state(p)
        keys = before["access_keys"]
        changed = False
        if old in keys and keys[old] != status:
            await self._set_key(p, old, status)
            changed = True
        if new and new in keys:
            if keys[new] == "Active":
                await self._set_key(p, new, "Inactive")
            await self._maybe("delete_access_key", self._write.delete_access_key,
                              UserName=p.name, AccessKeyId=new)
            changed = True
        after = await self._state(p) if changed else before
        self._verify(after["access_keys"].get(old) == status and new not in after["access_keys"],
                     "undo rotate", original.identity)
        return undo_result(action_id, original, changed=changed, before=before, after=after,
                           message=f"{old} {status}" + (f", deleted {new}" if new else ""))

    # ------------------------------------------------------------------ revoke

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        p = await self._principal(identity)
        if p.kind == "role":
            result = await self.reduce_scope(action_id, identity, {"deny_all": True})
            return result.model_copy(update={"action": Action.revoke, "undo": (
                result.undo.model_copy(update={"action": Action.revoke}) if result.undo
                else None)})
        before = await self._state(p)
        keys: dict[str, str] = before["access_keys"]
        named = self._named_keys(p, keys, params)
        deny = named is None  # the whole identity: every key, and console/API via AWSDenyAll
        active = [k for k in (named if named is not None else keys) if keys[k] == "Active"]
        attach = deny and DENY_ALL_ARN not in before["attached_policies"]
        if not active and not attach:
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before,
                                 message="the keys are inactive" + (
                                     " and AWSDenyAll is attached" if deny else ""))
        for key in active:
            await self._set_key(p, key, "Inactive")
        if attach:
            await self._attach(p, DENY_ALL_ARN)
        after = await self._state(p)
        self._verify(all(after["access_keys"].get(k) == "Inactive" for k in active)
                     and (not attach or DENY_ALL_ARN in after["attached_policies"]),
                     "revoke", identity)
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=identity.id, keys=len(active), deny_all=attach)
        return action_result(
            action_id, Action.revoke, identity, changed=True, before=before, after=after,
            message=f"deactivated {len(active)} access keys"
                    + ("; attached AWSDenyAll (console and API blocked, login profile kept)"
                       if attach else ""),
            undo=UndoSpec(action=Action.revoke,
                          params={"op": "reactivate_keys", "keys": active,
                                  "detach_deny": attach},
                          description="reactivate the keys"
                                      + ("; detach AWSDenyAll" if attach else "")))

    def _named_keys(self, p: _Principal, keys: dict[str, str],
                    params: dict[str, Any]) -> list[str] | None:
        """The keys a credential revoke names (the planner's ``credentials``, or the identity's
        own key); None revokes the whole identity. A named key that is not the user's is
        refused, never silently skipped."""
        named = [str(k) for k in params.get("credentials") or []]
        if not named and params.get("target") != "identity" and p.access_key_id:
            named = [p.access_key_id]
        if not named:
            if params.get("target") == "credential":
                raise PermanentProviderError(
                    f"revoke of a credential on user {p.name}, but the alert named no access "
                    "key", provider=self.name, code="NoCredentialNamed")
            return None
        foreign = [k for k in named if k not in keys]
        if foreign:
            raise PermanentProviderError(
                f"access key(s) {', '.join(foreign)} do not belong to user {p.name}",
                provider=self.name, code="NoSuchEntity")
        return named

    async def _undo_reactivate(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        p = await self._principal(original.identity)
        before = await self._state(p)
        keys = [k for k in original.undo.params["keys"]
                if before["access_keys"].get(k) == "Inactive"]
        for key in keys:
            await self._set_key(p, key, "Active")
        detach = bool(original.undo.params.get("detach_deny")) and (
            DENY_ALL_ARN in before["attached_policies"])
        if detach:
            await self._detach(p, DENY_ALL_ARN)
        changed = bool(keys) or detach
        after = await self._state(p) if changed else before
        self._verify(all(after["access_keys"].get(k) == "Active" for k in keys)
                     and not (detach and DENY_ALL_ARN in after["attached_policies"]),
                     "reactivate", original.identity)
        message = f"reactivated {len(keys)} keys" + ("; detached AWSDenyAll" if detach else "")
        if original.undo.params.get("unrestorable"):
            message += "; login profile NOT restored: set a new password to give console access"
        return undo_result(action_id, original, changed=changed, before=before, after=after,
                           message=message)

    # ------------------------------------------------------------------ elevation

    def _scope(self, p: _Principal, scope: str) -> tuple[str, str]:
        """``group:NAME`` (or a bare name) → ("group", NAME); ``policy:ARN`` → ("policy", ARN)."""
        kind, sep, value = scope.partition(":")
        if not sep or kind not in ("group", "policy"):
            kind, value = "group", scope
        if not value:
            raise PermanentProviderError(f"empty scope {scope!r}", provider=self.name,
                                         code="InvalidScope")
        if kind == "policy" and not value.startswith("arn:"):
            raise PermanentProviderError(
                f"scope {scope!r}: a policy scope is policy:<managed policy ARN>",
                provider=self.name, code="InvalidScope")
        if kind == "group" and p.kind != "user":
            raise PermanentProviderError(
                f"scope {scope!r}: IAM roles cannot join groups; use policy:<ARN>",
                provider=self.name, code="Unsupported")
        return kind, value

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        kind = "role" if snapshot.get("kind") == "role" else "user"
        what, value = self._scope(_Principal(kind, str(snapshot.get("name", ""))), scope)
        return value in (snapshot.get("groups" if what == "group" else "attached_policies")
                         or [])

    async def _holds(self, p: _Principal, kind: str, value: str) -> bool:
        held = await (self._groups(p) if kind == "group" else self._attached(p))
        return value in held

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Join group ``group:NAME`` (or ``NAME``) or attach ``policy:ARN``; False if held."""
        p = await self._principal(identity)
        kind, value = self._scope(p, scope)
        if await self._holds(p, kind, value):
            return False
        if kind == "group":
            await self._call("add_user_to_group", self._write.add_user_to_group,
                             UserName=p.name, GroupName=value)
        else:
            await self._attach(p, value)
        self._verify(await self._holds(p, kind, value), f"grant {scope}", identity)
        log.info("elevation.scope_granted", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id)
        return True

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Leave the group or detach the policy; False when it is not held."""
        p = await self._principal(identity)
        kind, value = self._scope(p, scope)
        if not await self._holds(p, kind, value):
            return False
        if kind == "group":
            await self._maybe("remove_user_from_group", self._write.remove_user_from_group,
                              UserName=p.name, GroupName=value)
        else:
            await self._detach(p, value)
        self._verify(not await self._holds(p, kind, value), f"revoke {scope}", identity)
        log.info("elevation.scope_revoked", provider=self.name, identity=identity.id,
                 scope=scope, action_id=action_id)
        return True

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "detach": self._undo_detach,
            "restore_scope": self._undo_restore_scope,
            "unrotate": self._undo_rotate,
            "reactivate_keys": self._undo_reactivate,
        })
