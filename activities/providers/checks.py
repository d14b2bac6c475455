"""``stanch providers check``: does a provider answer, and may Stanch do its job there?

For one configured provider, with its *own* credentials and before any incident:

1. **read** — the read credentials read one identity (``snapshot``);
2. **verify** — what verification needs is visible to them (the LDAP password attribute,
   or rotate cannot tell whether it changed the password and must refuse);
3. **act** — what the action credentials may do, by a dry run where the provider has one
   (Vault/OpenBao ``sys/capabilities-self``, IAM policy simulation), else by proving they
   authenticate (an LDAP bind, a GET with the action token).

Each finding is a :class:`Finding`; ``ok=False`` ones make the command exit non-zero.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from activities.providers.base import IdentityProvider, ProviderError
from stanch.capabilities import supports
from stanch.config import ProviderSettings, Settings
from stanch.models import Action, IdentityRef


@dataclass(frozen=True)
class Finding:
    provider: str
    step: str  # read | verify | act
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        fix = f"; fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.provider} {self.step}: {self.detail}{fix}"


async def check(name: str, settings: Settings, provider: IdentityProvider,
                identity: IdentityRef) -> list[Finding]:
    conf = settings.providers[name]
    found: list[Finding] = []
    try:
        snap = await provider.snapshot(identity)
    except ProviderError as err:
        return [Finding(name, "read", False, f"cannot read {identity.id}: {err}",
                        f"check providers.{name}.options and read_credentials")]
    found.append(Finding(name, "read", True, f"read {identity.id} ({_summary(snap)})"))
    found.append(_verify(name, conf, identity, snap))
    try:
        found += await _act(name, conf, settings, provider, identity)
    except ProviderError as err:
        found.append(Finding(name, "act", False, f"the action credentials failed: {err}",
                             f"check providers.{name}.action_credentials"))
    return found


def _summary(snap: dict[str, Any]) -> str:
    return ", ".join(f"{k} {len(v) if isinstance(v, list | dict) else v}"
                     for k, v in sorted(snap.items())
                     if k in ("groups", "policies", "status", "locked", "disabled",
                              "access_keys", "credentials", "sessions", "active"))


def _verify(name: str, conf: ProviderSettings, identity: IdentityRef,
            snap: dict[str, Any]) -> Finding:
    if conf.type == "ldap" and supports("ldap", Action.rotate, identity.kind):
        if snap.get("password_fingerprint") is None:
            return Finding(
                name, "verify", False,
                f"the read account cannot see userPassword of {identity.id}, so rotate "
                "cannot verify a password change (it refuses to run)",
                "grant the read account read access to userPassword (slapd: `access to "
                "attrs=userPassword by dn.exact=\"READ-DN\" read`), or use an account that has it")
        return Finding(name, "verify", True, "the password attribute is visible (as a "
                                             "fingerprint) to the read account")
    return Finding(name, "verify", True, "verification reads the same fields as the snapshot")


def _actions(ptype: str, identity: IdentityRef) -> list[Action]:
    return [a for a in Action if a is not Action.notify and supports(ptype, a, identity.kind)]


async def _act(name: str, conf: ProviderSettings, settings: Settings,
               provider: Any, identity: IdentityRef) -> list[Finding]:
    actions = _actions(conf.type, identity)
    names = ", ".join(a.value for a in actions) or "none"
    if conf.type == "mock":
        return [Finding(name, "act", True, f"may {names} (the mock IdP checks no permission)")]
    if conf.type == "vault":
        return await _vault(name, provider, identity, actions)
    if conf.type == "aws_iam":
        return await asyncio.to_thread(_aws, name, conf, provider, identity, actions)
    if conf.type == "ldap":
        who = await provider._run("who am i", True,
                                  lambda c: c.extend.standard.who_am_i() or "anonymous")
        return [Finding(name, "act", True, f"bound as {who}; may {names} if the directory's "
                                           "ACL allows (LDAP has no dry run)")]
    path = {"scim": f"/Users/{identity.id}", "okta": f"/api/v1/users/{identity.id}",
            "entra": f"/users/{identity.id}"}.get(conf.type)
    if path is not None:
        await provider._api.request("GET", path, write=True, what="GET with the action token")
        return [Finding(name, "act", True, f"the action credentials authenticate; may {names} "
                                           f"if granted ({conf.type} has no dry run)")]
    return [Finding(name, "act", True, f"not checked for {conf.type}")]


# Vault/OpenBao: capabilities-self answers exactly what the token may do on each path.
async def _vault(name: str, provider: Any, identity: IdentityRef,
                 actions: list[Action]) -> list[Finding]:
    role = provider._approle(identity)
    mount = provider._approle_mount
    if role is not None:
        paths = {Action.rotate: [f"auth/{mount}/role/{role}/secret-id",
                                 f"auth/{mount}/role/{role}/secret-id-accessor/destroy"]}
    else:
        entity = await provider._entity(identity)
        paths = {Action.reduce_scope: [f"identity/entity/id/{entity['id']}"],
                 Action.revoke: [f"identity/entity/id/{entity['id']}"],
                 Action.force_reauth: ["auth/token/revoke-accessor", "sys/leases/revoke-prefix"]}
    wanted = sorted({p for a in actions for p in paths.get(a, [])})
    client = provider._write

    def ask() -> dict[str, Any]:
        answer: dict[str, Any] = client.adapter.post("/v1/sys/capabilities-self",
                                                     json={"paths": wanted})
        return answer.get("data", answer)

    caps = await asyncio.to_thread(ask)
    out = []
    for action in actions:
        need = paths.get(action, [])
        if not need:
            continue
        denied = [p for p in need if not {"update", "create", "sudo", "root"}
                  & set(caps.get(p, []))]
        out.append(Finding(name, "act", not denied, f"{action.value}: " + (
            f"denied on {', '.join(denied)}" if denied else "allowed (capabilities-self)"),
            "grant the action token's policy update on those paths"))
    return out


# IAM: the policy simulator evaluates the action principal's policies without acting.
_IAM_CALLS = {
    Action.reduce_scope: ["iam:DetachUserPolicy", "iam:RemoveUserFromGroup",
                          "iam:AttachUserPolicy"],
    Action.force_reauth: ["iam:PutUserPolicy"],
    Action.rotate: ["iam:CreateAccessKey", "iam:UpdateAccessKey"],
    Action.revoke: ["iam:UpdateAccessKey", "iam:AttachUserPolicy"],
}


def _aws(name: str, conf: ProviderSettings, provider: Any, identity: IdentityRef,
         actions: list[Action]) -> list[Finding]:
    import botocore.exceptions

    iam = provider._write
    if iam._request_signer._credentials is None:
        return [Finding(name, "act", False, "no action credentials found",
                        f"set providers.{name}.action_credentials (or read_credentials)")]
    sts = _sts(iam, conf)
    try:
        caller = sts.get_caller_identity()["Arn"]
    except botocore.exceptions.ClientError as err:
        return [Finding(name, "act", False, f"the action credentials are refused: "
                        f"{err.response.get('Error', {}).get('Code')}",
                        f"check providers.{name}.action_credentials")]
    out = []
    for action in actions:
        calls = _IAM_CALLS.get(action, [])
        try:
            answer = iam.simulate_principal_policy(PolicySourceArn=caller, ActionNames=calls)
        except Exception as err:
            code = (err.response.get("Error", {}).get("Code", "")
                    if isinstance(err, botocore.exceptions.ClientError)
                    else type(err).__name__)
            out.append(Finding(name, "act", True, f"{action.value}: not simulated (this "
                                                  f"endpoint answers {code or 'an error'} to "
                                                  f"SimulatePrincipalPolicy); caller {caller}"))
            continue
        denied = [r["EvalActionName"] for r in answer.get("EvaluationResults", [])
                  if r.get("EvalDecision") != "allowed"]
        out.append(Finding(name, "act", not denied, f"{action.value}: " + (
            f"denied {', '.join(denied)}" if denied else "allowed (IAM policy simulation)"),
            f"allow {', '.join(denied)} to {caller}"))
    return out


def _sts(iam: Any, conf: ProviderSettings) -> Any:
    import boto3

    creds = iam._request_signer._credentials
    session = boto3.session.Session(
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token, region_name=iam.meta.region_name)
    return session.client("sts", endpoint_url=conf.options.get("endpoint_url"))
