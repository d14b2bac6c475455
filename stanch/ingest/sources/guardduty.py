"""AWS GuardDuty finding, via EventBridge: ``{"detail-type": "GuardDuty Finding", detail}``.

Severity is GuardDuty's 1.0-8.9 (9-10 critical on newer findings); the category comes from
the finding ``type`` (table in docs/alert-schema.md). A finding updated in place keeps its
``id``, so repeats dedup.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert, category_from_text
from stanch.ingest._doc import as_number, first, json_type, lookup, opt_str, parse_time, text
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "guardduty"

# First match wins; patterns are on the finding type ThreatPurpose:Resource/Name.
TYPE_CATEGORIES: list[tuple[re.Pattern[str], Category]] = [
    (re.compile(r"InstanceCredentialExfiltration|CredentialAccess:|Kubernetes.*/"
                r"(AnomalousBehavior\.)?SuccessfulAnonymousAccess", re.I), Category.leaked_secret),
    (re.compile(r"^PrivilegeEscalation:", re.I), Category.privilege_escalation),
    (re.compile(r"ConsoleLogin|ConsoleLoginSuccess|PasswordPolicyChange|"
                r"^InitialAccess:IAMUser", re.I), Category.risky_sign_in),
    (re.compile(r"^(Backdoor|CryptoCurrency|Trojan|Execution|Impact):(EC2|Runtime|ECS|EKS"
                r"|Container|Lambda)|^Execution:.*Malicious|Malware", re.I),
     Category.malware_on_host),
    (re.compile(r"IAMUser|AnomalousBehavior|TorIPCaller|MaliciousIPCaller|Policy:|Stealth:"
                r"|Discovery:|Persistence:|Exfiltration:S3", re.I), Category.anomalous_api_use),
]

_KIND_BY_USER_TYPE = {
    "role": IdentityKind.service_account,
    "assumedrole": IdentityKind.service_account,
    "root": IdentityKind.user,
    "federateduser": IdentityKind.user,
}


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    if "detail" in payload:
        finding, where = payload["detail"], "detail"
        if not isinstance(finding, dict):
            raise NormalizeError("detail", f"invalid: expected an object "
                                           f"(got {json_type(finding)})")
    else:
        finding, where = payload, ""  # a finding exported as is
    finding_id = opt_str(finding, "id")
    if finding_id is None:
        raise NormalizeError(f"{where}.id".lstrip("."), "missing")
    ftype = opt_str(finding, "type") or ""
    sev = as_number(finding.get("severity"))
    conf = as_number(finding.get("confidence"))
    return [build_alert(
        SOURCE,
        source_alert_id=finding_id,
        dedup_key=finding_id,
        received_at=received_at,
        raw=payload,
        title=text(opt_str(finding, "title") or ftype),
        description=text(opt_str(finding, "description")),
        category=category_for_type(ftype),
        severity=_severity(sev),
        confidence=Level.from_score(conf, 10) if conf is not None and 0 <= conf <= 10
        else Level.high,
        mentions=_mentions(finding),
        observed_at=parse_time(first(finding, "service.eventFirstSeen", "createdAt"))
        or parse_time(payload.get("time")),
    )]


def category_for_type(ftype: str) -> Category:
    for pattern, cat in TYPE_CATEGORIES:
        if pattern.search(ftype):
            return cat
    return category_from_text(ftype)


def _severity(sev: float | None) -> Level:
    # GuardDuty bands: 1.0-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical.
    if sev is None:
        return Level.medium
    if sev >= 9.0:
        return Level.critical
    if sev >= 7.0:
        return Level.high
    if sev >= 4.0:
        return Level.medium
    if sev >= 1.0:
        return Level.low
    return Level.info


def _mentions(finding: dict[str, Any]) -> Mentions:
    m = Mentions()
    key = lookup(finding, "resource.accessKeyDetails")
    if isinstance(key, dict):
        user_type = (opt_str(key, "userType") or "").lower()
        m.add(opt_str(key, "accessKeyId"), NameType.access_key_id, IdentityKind.access_key,
              "credential")
        m.add(opt_str(key, "userName"), NameType.username, _KIND_BY_USER_TYPE.get(user_type),
              "actor")
    profile = opt_str(finding, "resource.instanceDetails.iamInstanceProfile.arn")
    m.add(profile, NameType.arn, IdentityKind.service_account, "instance_profile")
    return m
