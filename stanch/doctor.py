"""``stanch doctor``: what would go wrong during an incident, found before one.

Reads the settings, the inventory and the playbooks — no provider is called (that is
``stanch providers check``) — and reports each problem as one line naming the file, the
setting and the fix:

- a credential reference (``env:NAME``, ``file:PATH``) that does not resolve;
- an inventory identity whose provider is not configured, or whose id does not have the
  form its provider and kind need (an IAM user written as a bare name with kind
  ``service_account`` would be looked up as a role);
- a playbook step whose action (or a parameter) no provider it may run on can do, unless
  the step says ``optional: true`` or declares a ``fallback`` those providers can run.

``stanch up``, ``stanch worker`` and ``stanch api`` run it at start and stop on a problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stanch.capabilities import declaration, supports, unhonoured
from stanch.config import Settings
from stanch.inventory import InventoryEntry, located_entries
from stanch.models import Action, IdentityKind
from stanch.playbook.loader import lint, playbook_files
from stanch.playbook.schema import Playbook, Step
from stanch.playbook.yamlsrc import read_yaml


@dataclass(frozen=True)
class Problem:
    where: str
    setting: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.setting}: {self.message}; fix: {self.fix}"


def diagnose(settings: Settings) -> list[Problem]:
    """Every problem found, in the order config, inventory, playbooks."""
    problems = list(_credential_problems(settings))
    entries, found = _inventory(settings)
    problems += found
    problems += _identity_problems(settings, entries)
    problems += _playbook_problems(settings, [e for e, _, _ in entries])
    return problems


# --------------------------------------------------------------------------- configuration


def config_file() -> str:
    return os.environ.get("STANCH_CONFIG", "stanch.toml")


def _credential_problems(settings: Settings) -> Iterable[Problem]:
    for name, conf in sorted(settings.providers.items()):
        for table in ("read_credentials", "action_credentials"):
            for key, secret in sorted(getattr(conf, table).items()):
                value = secret.get_secret_value()
                setting = f"providers.{name}.{table}.{key}"
                if value.startswith("env:") and value[4:] not in os.environ:
                    yield Problem(config_file(), setting,
                                  f"environment variable {value[4:]} is not set",
                                  f"export {value[4:]} in the environment of every Stanch "
                                  "process, or point the setting at a file: reference")
                elif value.startswith("file:") and not os.access(value[5:], os.R_OK):
                    yield Problem(config_file(), setting,
                                  f"secret file {value[5:]} cannot be read",
                                  "create it (mode 0600) readable by the Stanch user")


# --------------------------------------------------------------------------- inventory


def _inventory(settings: Settings) -> tuple[list[tuple[InventoryEntry, str, int]],
                                            list[Problem]]:
    entries, errors = located_entries(settings.inventory_paths)
    problems = [Problem(f"{e.file}:{e.line}", e.path or "(file)", e.message,
                        "correct the inventory file") for e in errors]
    return entries, problems


def _identity_problems(settings: Settings, entries: list[tuple[InventoryEntry, str, int]]
                       ) -> Iterable[Problem]:
    configured = settings.providers
    for entry, at, index in entries:
        conf = configured.get(entry.provider)
        if conf is None:
            known = ", ".join(sorted(configured)) or "none"
            yield Problem(at, f"identities[{index}].provider",
                          f"provider {entry.provider!r} of {entry.key} is not configured "
                          f"(configured: {known})",
                          f"add [providers.{entry.provider}] with its type to "
                          f"{config_file()} (docs/providers.md), or correct the name")
            continue
        issue = id_form_problem(conf.type, entry.kind, entry.id)
        if issue is not None:
            message, fix = issue
            yield Problem(at, f"identities[{index}].id", f"{entry.key}: {message}", fix)
            continue
        if not any(supports(conf.type, a, entry.kind) for a in Action if a is not Action.notify):
            yield Problem(at, f"identities[{index}].kind",
                          f"{conf.type} can do nothing to a {entry.kind.value}",
                          "correct the kind, or move the identity to a provider that "
                          "manages it")


_AWS_KEY = re.compile(r"^(AKIA|ASIA)[A-Z0-9]{16}$")
_AWS_ARN = re.compile(r"^arn:aws[\w-]*:iam::\d{12}:(user|role)/[\w+=,.@/-]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")


def id_form_problem(ptype: str, kind: IdentityKind, ident: str) -> tuple[str, str] | None:
    """Whether ``ident`` has the form ``ptype`` needs for ``kind``: (message, fix) or None."""
    if ptype == "aws_iam":
        return _aws_id(kind, ident)
    if ptype == "ldap":
        from ldap3.core.exceptions import LDAPInvalidDnError
        from ldap3.utils.dn import parse_dn
        try:
            ok = bool(parse_dn(ident))
        except LDAPInvalidDnError:
            ok = False
        if not ok:
            return (f"{ident!r} is not a DN; the ldap adapter names entries by DN",
                    "write the entry's DN, e.g. uid=carol,ou=people,dc=example,dc=com")
    if ptype == "entra":
        if kind is IdentityKind.user and not (_GUID.match(ident) or "@" in ident):
            return (f"{ident!r} is neither an object id nor a UPN",
                    "write the user's object id (a GUID) or UPN")
        if kind is IdentityKind.service_principal and not _GUID.match(ident):
            return (f"{ident!r} is not a service principal object id",
                    "write the service principal's object id (a GUID), not its app id or name")
    return None


def _aws_id(kind: IdentityKind, ident: str) -> tuple[str, str] | None:
    if kind is IdentityKind.access_key:
        if not _AWS_KEY.match(ident):
            return (f"{ident!r} is not an access key id", "write the AKIA…/ASIA… key id")
        return None
    if ident.startswith("arn:"):
        if not _AWS_ARN.match(ident):
            return (f"{ident!r} is not an IAM user or role ARN",
                    "write arn:aws:iam::ACCOUNT:user/NAME or arn:aws:iam::ACCOUNT:role/NAME")
        if kind is IdentityKind.user and ":role/" in ident:
            return ("a role ARN cannot be a user", "use kind service_account for a role")
        return None
    if kind is IdentityKind.user:
        return None
    if kind in (IdentityKind.service_account, IdentityKind.service_principal):
        return (f"a bare name of a {kind.value} means an IAM *role* to the aws_iam adapter, "
                "so an IAM user of that name is not found",
                f"write the ARN: id: arn:aws:iam::ACCOUNT:user/{ident} for an IAM user, or "
                f"arn:aws:iam::ACCOUNT:role/{ident} for a role (moto's ACCOUNT is "
                "123456789012)")
    return (f"kind {kind.value} has no meaning on aws_iam",
            "use user, service_account (with an ARN) or access_key")


# --------------------------------------------------------------------------- playbooks


def _playbook_problems(settings: Settings, entries: list[InventoryEntry]) -> Iterable[Problem]:
    paths = [settings.playbooks_dir]
    errors = lint(paths)
    for e in errors:
        yield Problem(f"{e.file}:{e.line}", e.path or "(file)", e.message,
                      "correct the playbook (`stanch playbook lint`)")
    if errors:
        return
    types: dict[str, str] = {name: p.type for name, p in settings.providers.items()}
    for path in playbook_files(paths):
        doc, _ = read_yaml(path)
        if doc is None or not isinstance(doc.data, dict):
            continue
        pb = Playbook.model_validate(doc.data)
        targets = _targets(pb, entries, types)
        for i, step in enumerate(pb.ladder):
            problem = _step_problem(step, targets)
            if problem is not None:
                message, fix = problem
                yield Problem(f"{doc.file}:{doc.line(('ladder', i, 'action'))}",
                              f"{pb.name}: ladder[{i}].action", message, fix)


def _targets(pb: Playbook, entries: list[InventoryEntry], types: dict[str, str]
             ) -> list[tuple[str, IdentityKind]]:
    """(provider type, kind) pairs this playbook may run on: the inventory identities its
    match allows (by kind and environment)."""
    m = pb.match
    return sorted({(types[e.provider], e.kind) for e in entries
                   if e.provider in types
                   and (not m.identity_kinds or e.kind in m.identity_kinds)
                   and (not m.environment or e.environment in m.environment)})


def _step_problem(step: Step, targets: list[tuple[str, IdentityKind]]
                  ) -> tuple[str, str] | None:
    if step.action is Action.notify or step.optional or not targets:
        return None
    lacking = sorted({t for t, k in targets if not _runs(t, k, step.action, step.params)
                      and not _fallback_runs(step, t, k)})
    if not lacking:
        return None
    everywhere = len(lacking) == len({t for t, _ in targets})
    reasons = "; ".join(f"{t}: {_why(t, step)}" for t in lacking)
    what = "no provider it may run on can do it" if everywhere else \
        f"{', '.join(lacking)} cannot do it"
    return (f"{step.action.value} — {what} ({reasons}); it would be skipped at run time",
            "mark the step `optional: true` if skipping it there is fine, declare a "
            "`fallback:`, or remove the step")


def _runs(ptype: str, kind: IdentityKind, action: Action, params: dict[str, Any]) -> bool:
    return supports(ptype, action, kind) and not unhonoured(ptype, action, params)


def _fallback_runs(step: Step, ptype: str, kind: IdentityKind) -> bool:
    fb = step.fallback
    if fb is None:
        return False
    action = fb.action or step.action
    return action is Action.notify or _runs(ptype, kind, action,
                                            fb.params if fb.params is not None else step.params)


def _why(ptype: str, step: Step) -> str:
    d = declaration(ptype, step.action)
    if not d.supported:
        return d.reason or "not supported"
    bad = unhonoured(ptype, step.action, step.params)
    return f"cannot honour {', '.join(bad)}" if bad else "not for this identity kind"


def report(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)
