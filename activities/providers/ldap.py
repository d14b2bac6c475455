"""LDAP adapter (ldap3) for OpenLDAP-style directories. Identity ids are entry DNs.

- reduce_scope: remove the DN from ``groupOfNames`` groups' ``member`` (params ``groups``:
  group DNs or cns, default all under ``options.group_base``). Undo adds it back. Result
  codes 16 (noSuchAttribute) and 20 (attributeOrValueExists) mean "already".
- rotate: Password Modify extended operation (RFC 3062) with a random password the server
  hashes. Irreversible: the old ``userPassword`` hash is deliberately *not* captured, since
  a hash stored in workflow history and the audit trail is crackable credential material.
  The new password goes to ``options.secret_drop_dir`` (before the write, so a lost answer
  does not lose it) or is discarded. The fingerprint of ``password_fingerprint`` (a param,
  or the intent's snapshot on a retry) makes a repeat report "already", so a retry never
  changes the password twice. A read account that cannot see ``userPassword`` cannot
  verify the change: rotate then fails permanently *before* writing.
- revoke: lock with ``pwdAccountLockedTime: 000001010000Z`` (permanent lock). This needs
  the ``ppolicy`` overlay with a policy that has ``pwdLockout: TRUE``; without the overlay
  the attribute is undefined and revoke fails permanently saying so. Undo deletes the
  attribute, and ppolicy then clears ``pwdFailureTime`` (the failed-login history): every
  snapshot carries it as ``failed_logins``, so the revoke's audited intent and before-state
  keep it, and the loss is declared (``stanch.capabilities``). A password change (rotate)
  clears it too. (Active Directory would use ``userAccountControl`` bit 0x2 instead; not
  implemented here.)
- force_reauth: LDAP has no sessions; fails permanently with that reason.

Elevation (``grant_scope``/``revoke_scope``): the scope is a ``groupOfNames``, ``cn=SCOPE``
under ``options.group_base`` (or a full group DN); the DN is added to or removed from its
``member``. Removing the last member is refused by the schema (objectClassViolation) and
fails permanently, as for reduce_scope.

The playbook's ``remove_groups`` and ``only_new_grants``/``new_grants`` choose groups too.

ldap3 is synchronous; each call opens a short-lived connection in a thread, bound with the
read or the action credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import ldap3
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from activities.providers._common import (
    DoneActions,
    SecretDrop,
    action_result,
    dispatch_undo,
    refuse_credential_kind,
    refuse_credential_target,
    snapshot_before,
    undo_result,
    wanted,
)
from activities.providers._credentials import credential
from activities.providers.base import PermanentProviderError, TransientProviderError
from stanch.config import ProviderSettings, Settings
from stanch.logging import get_logger
from stanch.models import Action, ActionResult, IdentityRef, UndoSpec

LOCKED_FOREVER = "000001010000Z"
NO_SUCH_ATTRIBUTE = 16
VALUE_EXISTS = 20
_TRANSIENT_CODES = {3, 11, 51, 52}  # timeLimit, adminLimit, busy, unavailable
T = TypeVar("T")
log = get_logger(__name__)


def fingerprint(stored: bytes | None) -> str | None:
    """A short digest of a *salted* stored hash; cleartext values are never fingerprinted."""
    if not stored:
        return None
    if not stored.startswith(b"{"):
        return "cleartext"
    return hashlib.sha256(stored).hexdigest()[:16]


def _dn_key(dn: str) -> str:
    """A DN compared the way directories do for these attributes: case and spacing aside."""
    return ",".join(f"{attr.strip().lower()}={value.strip().lower()}"
                    for attr, value, _ in parse_dn(dn, strip=True))


class LdapProvider:
    def __init__(self, name: str, url: str, *, read_bind: tuple[str | None, str | None],
                 action_bind: tuple[str | None, str | None], base: str,
                 group_base: str | None = None, timeout: int = 10,
                 secret_drop: SecretDrop | None = None) -> None:
        self.name = name
        self._server = ldap3.Server(url, connect_timeout=max(1, int(timeout)),
                                   get_info=ldap3.NONE)
        self._read_bind = read_bind
        self._action_bind = action_bind
        self._base = base
        self._group_base = group_base or base
        self._timeout = max(1, int(timeout))  # ldap3 packs it into a socket option
        self._drop = secret_drop or SecretDrop(None)
        self._done = DoneActions()

    @classmethod
    def from_settings(cls, name: str, conf: ProviderSettings, settings: Settings
                      ) -> LdapProvider:
        opts = conf.options
        if not opts.get("url") or not opts.get("base"):
            raise PermanentProviderError("options.url and options.base are required",
                                         provider=name, code="Config")

        def bind(purpose: Any) -> tuple[str | None, str | None]:
            return (credential(conf, purpose, "bind_dn", provider=name),
                    credential(conf, purpose, "password", provider=name))

        return cls(name, str(opts["url"]), read_bind=bind("read"), action_bind=bind("action"),
                   base=str(opts["base"]), group_base=opts.get("group_base"),
                   timeout=int(opts.get("timeout", 10)),
                   secret_drop=SecretDrop(opts.get("secret_drop_dir")))

    async def aclose(self) -> None:
        """Connections are per call; nothing stays open."""

    # ------------------------------------------------------------------ plumbing

    def _connect(self, write: bool) -> ldap3.Connection:
        user, password = self._action_bind if write else self._read_bind
        return ldap3.Connection(self._server, user=user, password=password,
                                receive_timeout=self._timeout, raise_exceptions=False,
                                read_only=not write)

    async def _run(self, what: str, write: bool, fn: Callable[[ldap3.Connection], T]) -> T:
        def work() -> T:
            conn = self._connect(write)
            try:
                if not conn.bind():
                    raise self._error(what, conn.result)
                return fn(conn)
            finally:
                conn.unbind()
        try:
            return await asyncio.to_thread(work)
        except ldap_exc.LDAPCommunicationError as err:
            raise TransientProviderError(f"{what}: cannot reach {self.name} "
                                         f"({type(err).__name__})", provider=self.name,
                                         code=type(err).__name__) from None

    def _error(self, what: str, result: dict[str, Any]) -> Exception:
        code = int(result.get("result", -1))
        desc = str(result.get("description", "error"))
        message = f"{what}: {desc} ({code})"
        if result.get("message"):
            message += f": {result['message']}"
        if code in _TRANSIENT_CODES:
            return TransientProviderError(message, provider=self.name, code=desc,
                                          retry_after=1.0)
        return PermanentProviderError(message, provider=self.name, code=desc)

    def _check(self, conn: ldap3.Connection, ok: bool, what: str,
               already: tuple[int, ...] = ()) -> bool:
        """True when the write changed something, False when it was already so."""
        if ok:
            return True
        if int(conn.result.get("result", -1)) in already:
            return False
        raise self._error(what, conn.result)

    # ------------------------------------------------------------------ reads

    def _read_state(self, conn: ldap3.Connection, dn: str) -> dict[str, Any]:
        found = conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE,
                            attributes=["uid", "cn", "userPassword", "pwdAccountLockedTime",
                                        "pwdFailureTime"])
        if not found:
            raise self._error(f"read {dn}", conn.result)
        attrs = conn.response[0]["raw_attributes"]
        conn.search(self._group_base,
                    f"(&(objectClass=groupOfNames)(member={escape_filter_chars(dn)}))",
                    search_scope=ldap3.SUBTREE, attributes=["cn"])
        groups = sorted(e["dn"] for e in conn.response if e.get("type") == "searchResEntry")
        locked = attrs.get("pwdAccountLockedTime") or []
        password = attrs.get("userPassword") or []
        failures = attrs.get("pwdFailureTime") or []
        return {
            "dn": dn,
            "groups": groups,
            "locked": bool(locked),
            "locked_time": locked[0].decode() if locked else None,
            "password_fingerprint": fingerprint(password[0] if password else None),
            # Evidence: ppolicy clears it when a lock is removed, so every snapshot (and the
            # audited intent of every action) carries it.
            "failed_logins": sorted(v.decode() for v in failures),
        }

    async def _state(self, dn: str) -> dict[str, Any]:
        return await self._run(f"read {dn}", False, lambda c: self._read_state(c, dn))

    async def snapshot(self, identity: IdentityRef) -> dict[str, Any]:
        return await self._state(identity.id)

    def _verify(self, ok: bool, what: str) -> None:
        if not ok:
            raise TransientProviderError(f"{what} not visible after the write; retry",
                                         provider=self.name, code="VerifyFailed", retry_after=1.0)

    # ------------------------------------------------------------------ reduce_scope

    def _set_member(self, conn: ldap3.Connection, dn: str, groups: list[str],
                    present: bool) -> list[str]:
        changed = []
        op = ldap3.MODIFY_ADD if present else ldap3.MODIFY_DELETE
        code = VALUE_EXISTS if present else NO_SUCH_ATTRIBUTE
        for group in groups:
            ok = conn.modify(group, {"member": [(op, [dn])]})
            if not ok and int(conn.result.get("result", -1)) == 65 and not present:
                raise PermanentProviderError(
                    f"cannot remove {dn} from {group}: groupOfNames needs at least one member "
                    "(objectClassViolation); add a placeholder member first",
                    provider=self.name, code="objectClassViolation")
            if self._check(conn, ok, f"{'add to' if present else 'remove from'} {group}",
                           already=(code,)):
                changed.append(group)
        return changed

    async def reduce_scope(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        dn = identity.id
        before = await self._state(dn)
        names = wanted(params, "groups", "remove_groups")
        groups = [g for g in before["groups"]
                  if names is None or g in names or parse_dn(g)[0][1] in names]
        removed = await self._run("remove memberships", True,
                                  lambda c: self._set_member(c, dn, groups, present=False))
        if not removed:
            return action_result(action_id, Action.reduce_scope, identity, changed=False,
                                 before=before, after=before, message="no matching memberships")
        after = await self._state(dn)
        self._verify(not set(removed) & set(after["groups"]), "membership removal")
        log.info("action.applied", provider=self.name, action="reduce_scope",
                 action_id=action_id, identity=dn, groups=len(removed))
        return action_result(
            action_id, Action.reduce_scope, identity, changed=True, before=before, after=after,
            message=f"removed from {len(removed)} groups",
            undo=UndoSpec(action=Action.reduce_scope, params={"op": "add_member",
                                                              "groups": removed},
                          description="add the DN back to the groups"))

    async def _undo_member(self, action_id: str, original: ActionResult) -> ActionResult:
        assert original.undo is not None
        dn = original.identity.id
        groups = list(original.undo.params["groups"])
        before = await self._state(dn)
        added = await self._run("restore memberships", True,
                                lambda c: self._set_member(c, dn, groups, present=True))
        after = await self._state(dn) if added else before
        self._verify(set(groups) <= set(after["groups"]), "membership restore")
        return undo_result(action_id, original, changed=bool(added), before=before, after=after)

    # ------------------------------------------------------------------ revoke

    def _lock(self, conn: ldap3.Connection, dn: str, locked: bool) -> bool:
        if locked:
            ok = conn.modify(dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_ADD,
                                                            [LOCKED_FOREVER])]})
            if not ok and int(conn.result.get("result", -1)) == 17:  # undefinedAttributeType
                raise PermanentProviderError(
                    f"cannot lock {dn}: pwdAccountLockedTime is undefined, so the ppolicy "
                    "overlay is not loaded on this directory", provider=self.name,
                    code="undefinedAttributeType")
            return self._check(conn, ok, f"lock {dn}", already=(VALUE_EXISTS,))
        ok = conn.modify(dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]})
        return self._check(conn, ok, f"unlock {dn}", already=(NO_SUCH_ATTRIBUTE,))

    async def revoke(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        refuse_credential_target(self.name, identity, params)
        dn = identity.id
        before = await self._state(dn)
        if before["locked"]:
            return action_result(action_id, Action.revoke, identity, changed=False,
                                 before=before, after=before, message="account already locked")
        changed = await self._run(f"lock {dn}", True, lambda c: self._lock(c, dn, True))
        after = await self._state(dn)
        self._verify(after["locked"], "account lock")
        log.info("action.applied", provider=self.name, action="revoke", action_id=action_id,
                 identity=dn)
        kept = len(before["failed_logins"])
        return action_result(
            action_id, Action.revoke, identity, changed=changed, before=before, after=after,
            message="locked with pwdAccountLockedTime (ppolicy); the failed-login history "
                    f"({kept} pwdFailureTime values) is in the before-state: unlocking "
                    "makes the password policy clear it",
            undo=UndoSpec(action=Action.revoke, params={"op": "unlock"},
                          description="delete pwdAccountLockedTime"))

    async def _undo_lock(self, action_id: str, original: ActionResult) -> ActionResult:
        dn = original.identity.id
        before = await self._state(dn)
        changed = await self._run(f"unlock {dn}", True, lambda c: self._lock(c, dn, False))
        after = await self._state(dn) if changed else before
        self._verify(not after["locked"], "account unlock")
        lost = [t for t in original.before.get("failed_logins", [])
                if t not in after["failed_logins"]]
        return undo_result(action_id, original, changed=changed, before=before, after=after,
                           message="unlocked" + (
                               f"; the password policy cleared {len(lost)} failed-login "
                               "times, kept in the revoke's before-state and audit record"
                               if lost else ""))

    # ------------------------------------------------------------------ rotate

    async def rotate(self, action_id: str, identity: IdentityRef,
                     params: dict[str, Any]) -> ActionResult:
        refuse_credential_kind(self.name, identity, params, "password")
        dn = identity.id
        repeat = self._done.repeat(action_id)
        if repeat is not None:
            return repeat
        before = await self._state(dn)
        if before["password_fingerprint"] is None:
            # Without seeing the attribute no change can be verified, and a retry would
            # change the password again: refuse before writing, for a human to fix.
            raise PermanentProviderError(
                f"cannot verify a password change on {dn}: the read account cannot see "
                "userPassword (or the entry has none); grant the read account read access "
                f"to userPassword (check with `stanch providers check {self.name}`)",
                provider=self.name, code="VerifyImpossible")
        # The fingerprint before this action's first attempt (a retry's intent snapshot):
        # a different one now means an earlier attempt of this action already changed it.
        expected = params.get("password_fingerprint") or snapshot_before(
            params, "password_fingerprint")
        if expected is not None and before["password_fingerprint"] != expected:
            return action_result(action_id, Action.rotate, identity, changed=False,
                                 before=before, after=before, irreversible=True,
                                 message="the password was already changed")
        new_password = secrets.token_urlsafe(24)

        def modify(conn: ldap3.Connection) -> bool:
            ok = conn.extend.standard.modify_password(dn, new_password=new_password)
            return self._check(conn, bool(ok), f"password modify {dn}")

        # Delivered first: an answer lost after the write must not lose the new password.
        note = self._drop.deliver(self.name, dn, "password", new_password)
        await self._run(f"password modify {dn}", True, modify)
        after = await self._state(dn)
        self._verify(after["password_fingerprint"] != before["password_fingerprint"],
                     "password change")
        log.info("action.applied", provider=self.name, action="rotate", action_id=action_id,
                 identity=dn)
        result = action_result(
            action_id, Action.rotate, identity, changed=True, before=before, after=after,
            irreversible=True,
            message="password reset to a random value; the old hash was not captured, so "
                    f"this cannot be undone (an administrator sets a new password); {note}")
        self._done.add(result)
        return result

    async def force_reauth(self, action_id: str, identity: IdentityRef,
                           params: dict[str, Any]) -> ActionResult:
        raise PermanentProviderError("LDAP has no sessions to revoke: use the identity "
                                     "provider in front of it", provider=self.name,
                                     code="Unsupported")

    # ------------------------------------------------------------------ elevation

    def _scope_dn(self, scope: str) -> str:
        """``cn=SCOPE`` under the groups base; a scope that is already a DN is used as is."""
        if not scope:
            raise PermanentProviderError("empty scope", provider=self.name, code="InvalidScope")
        if "=" in scope:
            try:
                rdns = parse_dn(scope, strip=True)
            except ldap_exc.LDAPInvalidDnError:
                raise PermanentProviderError(f"scope {scope!r} is not a DN", provider=self.name,
                                             code="InvalidScope") from None
            return ",".join(f"{attr}={value}" for attr, value, _ in rdns)
        return f"cn={escape_rdn(scope)},{self._group_base}"

    async def _scope_change(self, action_id: str, identity: IdentityRef, scope: str,
                            present: bool) -> bool:
        dn, group = identity.id, self._scope_dn(scope)
        key = _dn_key(group)
        held = {_dn_key(g) for g in (await self._state(dn))["groups"]}
        if (key in held) is present:
            return False
        changed = await self._run(f"{'grant' if present else 'revoke'} {group}", True,
                                  lambda c: self._set_member(c, dn, [group], present=present))
        now = {_dn_key(g) for g in (await self._state(dn))["groups"]}
        self._verify((key in now) is present, f"membership of {group}")
        log.info("elevation.scope_granted" if present else "elevation.scope_revoked",
                 provider=self.name, identity=dn, scope=scope, action_id=action_id,
                 changed=bool(changed))
        return bool(changed)

    def holds_scope(self, snapshot: dict[str, Any], scope: str) -> bool:
        key = _dn_key(self._scope_dn(scope))
        return any(_dn_key(g) == key for g in snapshot.get("groups") or [])

    async def grant_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Add the DN to groupOfNames ``cn=SCOPE``; False when it already is a member."""
        return await self._scope_change(action_id, identity, scope, present=True)

    async def revoke_scope(self, action_id: str, identity: IdentityRef, scope: str) -> bool:
        """Remove the DN from ``cn=SCOPE``; False when it is not a member."""
        return await self._scope_change(action_id, identity, scope, present=False)

    async def undo(self, action_id: str, original: ActionResult) -> ActionResult:
        return await dispatch_undo(self.name, action_id, original, {
            "add_member": self._undo_member,
            "unlock": self._undo_lock,
        })
