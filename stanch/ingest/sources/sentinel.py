"""Microsoft Sentinel incident, as an automation rule's Logic App posts it.

``{"object": {"name": <incident guid>, "properties": {title, severity, relatedEntities[],
additionalData: {tactics}, …}}}``. Entity properties are camelCase in incidents
(``aadUserId``) and PascalCase in alert entities (``AadUserId``); both are read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stanch.ingest._common import (
    Mentions,
    build_alert,
    category_from_tactics,
    category_from_text,
    level_word,
)
from stanch.ingest._doc import (
    as_str,
    json_type,
    lookup,
    opt_str,
    parse_time,
    req_obj,
    req_str,
    text,
)
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "sentinel"

_CLASSIFICATION = {
    "truepositive": Level.high,
    "benignpositive": Level.low,
    "falsepositive": Level.low,
}


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    where = "object" if "object" in payload else ""
    incident = req_obj(payload, where, where="") if where else payload
    name = req_str(incident, "name", where=where)
    props = req_obj(incident, "properties", where=where)
    title = opt_str(props, "title") or ""
    tactics = lookup(props, "additionalData.tactics")
    category = category_from_text(title)
    if category is Category.other:
        category = category_from_tactics(tactics)
    classification = (opt_str(props, "classification") or "").lower()
    number = opt_str(props, "incidentNumber")
    entities = props.get("relatedEntities", [])
    if not isinstance(entities, list):
        raise NormalizeError(f"{where}.properties.relatedEntities".lstrip("."),
                             "invalid: expected an array")
    return [build_alert(
        SOURCE,
        source_alert_id=name,
        dedup_key=name,
        received_at=received_at,
        raw=payload,
        title=text(f"{title} (incident {number})" if number and title else title),
        description=text(props.get("description")),
        category=category,
        severity=level_word(props.get("severity")) or Level.medium,
        confidence=_CLASSIFICATION.get(classification, Level.medium),
        mentions=_mentions(entities),
        observed_at=parse_time(props.get("firstActivityTimeUtc"))
        or parse_time(props.get("createdTimeUtc")),
    )]


def _ci(props: dict[str, Any], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in props.items() if isinstance(k, str)}
    for n in names:
        s = as_str(lowered.get(n.lower()))
        if s:
            return s
    return None


def _mentions(entities: list[Any]) -> Mentions:
    m = Mentions()
    for ent in entities:
        if not isinstance(ent, dict):
            continue
        kind = (opt_str(ent, "kind") or opt_str(ent, "properties.Type") or "").lower()
        props = ent.get("properties")
        if not isinstance(props, dict):
            continue
        if kind == "account":
            user = IdentityKind.user
            m.add(_ci(props, "aadUserId"), NameType.aad_object_id, user, "account")
            upn = _ci(props, "userPrincipalName", "upn")
            account, suffix = _ci(props, "accountName", "name"), _ci(props, "upnSuffix")
            if not upn and account and suffix:
                upn = f"{account}@{suffix}"
            m.add(upn, NameType.upn, user, "account")
            m.add(_ci(props, "sid"), NameType.sid, user, "account")
            domain = _ci(props, "ntDomain")
            if account and domain and not upn:
                m.add(f"{domain}\\{account}", NameType.domain_user, user, "account")
            elif account and not upn and not _ci(props, "aadUserId", "sid"):
                m.add(account, NameType.username, user, "account")
        elif kind == "cloudapplication":
            app = _ci(props, "appId", "applicationId")
            m.add(app, NameType.app_id, None, "application")
    return m


