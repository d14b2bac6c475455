"""OCSF Detection Finding (class_uid 2004; other Findings classes 2xxx accepted).

Identities: ``actor.user``, ``user`` and the same under ``evidences[]``; a user's
``credential_uid`` is a mention of its own (an access key id when it looks like one).
``type_id`` 3 (System) and 4 (Service) mark non-human identities.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stanch.ingest._common import (
    Mentions,
    build_alert,
    category_from_tactics,
    category_from_text,
    is_aws_access_key_id,
    level_word,
)
from stanch.ingest._doc import (
    as_list,
    as_number,
    first,
    json_type,
    lookup,
    opt_str,
    parse_time,
    req_str,
    text,
)
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "ocsf"
_SEVERITY_ID = {1: Level.info, 2: Level.low, 3: Level.medium, 4: Level.high,
                5: Level.critical, 6: Level.critical}
_CONFIDENCE_ID = {1: Level.low, 2: Level.medium, 3: Level.high}
_USER_KIND = {1: IdentityKind.user, 2: IdentityKind.user, 3: IdentityKind.service_account,
              4: IdentityKind.service_account}


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    class_uid = as_number(payload.get("class_uid"))
    if payload.get("class_uid") is not None and (class_uid is None
                                                 or not 2000 <= class_uid < 3000):
        raise NormalizeError("class_uid", "invalid: expected a Findings class "
                                          "(2004 Detection Finding)")
    uid = req_str(payload, "finding_info.uid")
    title = opt_str(payload, "finding_info.title", "message") or ""
    types = [t for t in as_list(lookup(payload, "finding_info.types")) if isinstance(t, str)]
    category = category_from_text(title, opt_str(payload, "finding_info.analytic.name"), *types)
    if category is Category.other:
        tactics = [opt_str(a, "tactic.name") for a in as_list(payload.get("attacks"))
                   if isinstance(a, dict)]
        category = category_from_tactics(tactics)
    return [build_alert(
        SOURCE,
        source_alert_id=uid,
        dedup_key=uid,
        received_at=received_at,
        raw=payload,
        title=text(title),
        description=text(opt_str(payload, "finding_info.desc")),
        category=category,
        severity=_level(payload, "severity_id", "severity", _SEVERITY_ID),
        confidence=_confidence(payload),
        mentions=_mentions(payload),
        observed_at=parse_time(first(payload, "finding_info.first_seen_time", "time")),
    )]


def _level(doc: dict[str, Any], id_key: str, word_key: str, table: dict[int, Level]) -> Level:
    n = as_number(doc.get(id_key))
    if n is not None and n == int(n) and int(n) in table:
        return table[int(n)]
    return level_word(doc.get(word_key)) or Level.medium


def _confidence(doc: dict[str, Any]) -> Level:
    n = as_number(doc.get("confidence_id"))
    if n is not None and n == int(n) and int(n) in _CONFIDENCE_ID:
        return _CONFIDENCE_ID[int(n)]
    score = as_number(doc.get("confidence_score"))
    if score is not None and 0 <= score <= 100:
        return Level.from_score(score)
    return level_word(doc.get("confidence")) or Level.medium


def _users(doc: dict[str, Any]) -> list[tuple[Any, str]]:
    found: list[tuple[Any, str]] = [(lookup(doc, "actor.user"), "actor"), (doc.get("user"), "user")]
    for ev in as_list(doc.get("evidences"))[:50]:
        if isinstance(ev, dict):
            found += [(lookup(ev, "actor.user"), "actor"), (ev.get("user"), "user")]
    return found


def _mentions(doc: dict[str, Any]) -> Mentions:
    m = Mentions()
    for user, role in _users(doc):
        if not isinstance(user, dict):
            continue
        type_id = as_number(user.get("type_id"))
        kind = _USER_KIND.get(int(type_id)) if type_id is not None and type_id == int(type_id) \
            else None
        m.add(opt_str(user, "email_addr"), NameType.email, kind, role)
        m.add(opt_str(user, "uid"), None, kind, role, is_id=True)
        m.add(opt_str(user, "name"), None, kind, role)
        cred = opt_str(user, "credential_uid")
        if cred:
            if is_aws_access_key_id(cred):
                m.add(cred, NameType.access_key_id, IdentityKind.access_key, "credential")
            else:
                m.add(cred, NameType.token, IdentityKind.token, "credential")
    return m
