"""CrowdStrike Falcon: Fusion "call webhook" or event-stream events.

``{"metadata": {"eventType", "offset", …}, "event": {UserName (DOMAIN\\user),
ComputerName, Severity, CompositeId, …}}``. Endpoint detections and identity-protection
detections share the envelope; ``eventType`` tells them apart (table in docs/alert-schema.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert, category_from_text, level_word
from stanch.ingest._doc import as_number, json_type, lookup, opt_str, parse_time, req_obj, text
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "crowdstrike"

_IDENTITY_EVENTS = {"idpdetectionsummaryevent", "identityprotectionevent",
                    "identityprotectionincidentevent"}
_ENDPOINT_EVENTS = {"detectionsummaryevent", "eppdetectionsummaryevent"}
# Falcon's 1-5 scale on endpoint detections.
_SEVERITY_1_5 = {1: Level.info, 2: Level.low, 3: Level.medium, 4: Level.high, 5: Level.critical}


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    event = req_obj(payload, "event")
    event_type = opt_str(payload, "metadata.eventType") or ""
    composite = opt_str(event, "CompositeId", "DetectId", "IncidentId")
    if composite is None:
        raise NormalizeError("event.CompositeId", "missing")
    name = opt_str(event, "DetectName", "Name", "Objective", "Tactic") or event_type
    return [build_alert(
        SOURCE,
        source_alert_id=composite,
        dedup_key=composite,
        received_at=received_at,
        raw=payload,
        title=text(name),
        description=text(opt_str(event, "DetectDescription", "Description")),
        category=_category(event_type, event),
        severity=_severity(event),
        confidence=_confidence(event),
        mentions=_mentions(event),
        observed_at=parse_time(lookup(event, "Timestamp"))
        or parse_time(lookup(payload, "metadata.eventCreationTime")),
    )]


def _category(event_type: str, event: dict[str, Any]) -> Category:
    et = event_type.lower()
    tactic = (opt_str(event, "Tactic") or "").lower().replace(" ", "")
    by_name = category_from_text(opt_str(event, "DetectName", "Name"), opt_str(event, "Technique"))
    if et in _IDENTITY_EVENTS:
        # Identity detections are sign-in risk unless the name says something sharper.
        if by_name in (Category.privilege_escalation, Category.dormant_identity_active,
                       Category.leaked_secret):
            return by_name
        return Category.risky_sign_in
    if et in _ENDPOINT_EVENTS:
        if tactic == "credentialaccess":
            return Category.leaked_secret  # credentials dumped from the host
        if tactic == "privilegeescalation":
            return Category.privilege_escalation
        return Category.malware_on_host
    return by_name


def _severity(event: dict[str, Any]) -> Level:
    word = level_word(event.get("SeverityName"))
    if word:
        return word
    n = as_number(event.get("Severity"))
    if n is None:
        return Level.medium
    if n <= 5 and n == int(n):
        return _SEVERITY_1_5.get(int(n), Level.info)
    return Level.from_score(n) if 0 <= n <= 100 else Level.medium


def _confidence(event: dict[str, Any]) -> Level:
    n = as_number(event.get("Confidence"))
    if n is not None and 0 <= n <= 100:
        return Level.from_score(n)
    return level_word(event.get("Confidence")) or Level.medium


def _mentions(event: dict[str, Any]) -> Mentions:
    m = Mentions()
    user = IdentityKind.user
    name = opt_str(event, "UserName")
    if name:
        m.add(name, NameType.domain_user if "\\" in name else None, user, "actor")
    m.add(opt_str(event, "SourceAccountUpn"), NameType.upn, user, "actor")
    m.add(opt_str(event, "SourceAccountObjectSid"), NameType.sid, user, "actor")
    account = opt_str(event, "SourceAccountName")
    domain = opt_str(event, "SourceAccountDomain")
    if account and domain and "@" not in account and "\\" not in account:
        m.add(f"{domain.split('.')[0].upper()}\\{account}", NameType.domain_user, user, "actor")
    elif account:
        m.add(account, None, user, "actor")
    m.add(opt_str(event, "TargetAccountUpn"), NameType.upn, user, "target")
    m.add(opt_str(event, "TargetAccountName"), None, user, "target")
    return m
