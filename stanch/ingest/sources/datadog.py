"""Datadog Cloud SIEM security signal, through the Webhooks integration.

Datadog's webhook body is a template the operator writes; docs/alert-schema.md gives the
one to use. Keys may be the variable names themselves (``SECURITY_SIGNAL_ID``) or short
names (``id``). ``attributes`` / ``group_by`` may arrive as objects or — when the template
quoted them — as JSON text; attribute keys may carry Datadog's ``@`` prefix.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert, category_from_text, level_word
from stanch.ingest._doc import (
    as_list,
    as_number,
    first,
    json_type,
    lookup,
    opt_str,
    parse_time,
    text,
)
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, IdentityKind, Level, NameType

SOURCE = "datadog"
_ID_KEYS = ("SECURITY_SIGNAL_ID", "security_signal_id", "signal_id", "id")
# Datadog's {{severity}} variable is 0-4 (info … critical).
_SEVERITY_0_4 = [Level.info, Level.low, Level.medium, Level.high, Level.critical]


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    signal_id = opt_str(payload, *_ID_KEYS)
    if signal_id is None or signal_id.startswith("$"):
        # "$SECURITY_SIGNAL_ID" arriving verbatim means the template was used outside a signal.
        raise NormalizeError("SECURITY_SIGNAL_ID", "missing" if signal_id is None
                             else "invalid: template variable was not filled in")
    attrs = _strip_at(_obj(first(payload, "SECURITY_SIGNAL_ATTRIBUTES", "attributes")))
    group_by = _strip_at(_obj(first(payload, "SECURITY_RULE_GROUP_BY_FIELDS", "group_by")))
    title = opt_str(payload, "SECURITY_SIGNAL_TITLE", "title", "SECURITY_RULE_NAME",
                    "rule_name", "rule.name") or ""
    rule_name = opt_str(payload, "SECURITY_RULE_NAME", "rule_name", "rule.name")
    tags = [t for t in as_list(first(payload, "tags", "SECURITY_SIGNAL_TAGS"))
            if isinstance(t, str)]
    return [build_alert(
        SOURCE,
        source_alert_id=signal_id,
        dedup_key=signal_id,
        received_at=received_at,
        raw=payload,
        title=text(title),
        description=text(opt_str(payload, "SECURITY_SIGNAL_MSG", "message", "text")),
        category=category_from_text(rule_name, title, *tags),
        severity=_severity(first(payload, "SECURITY_SIGNAL_SEVERITY", "severity")),
        confidence=level_word(first(payload, "confidence")) or Level.medium,
        mentions=_mentions(attrs, group_by),
        observed_at=parse_time(first(payload, "DATE", "date", "timestamp")),
    )]


def _obj(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _strip_at(d: dict[str, Any]) -> dict[str, Any]:
    return {(k[1:] if isinstance(k, str) and k.startswith("@") else k): v for k, v in d.items()}


def _severity(value: Any) -> Level:
    word = level_word(value)
    if word:
        return word
    n = as_number(value)
    if n is not None and 0 <= n <= 4 and n == int(n):
        return _SEVERITY_0_4[int(n)]
    return Level.medium


def _mentions(attrs: dict[str, Any], group_by: dict[str, Any]) -> Mentions:
    m = Mentions()
    user = IdentityKind.user
    for doc in (group_by, attrs):
        for v in as_list(lookup(doc, "usr.email")):
            m.add(v, NameType.email, user, "actor")
        for v in as_list(lookup(doc, "usr.name")):
            m.add(v, None, None, "actor")
        for v in as_list(lookup(doc, "usr.id")):
            m.add(v, None, None, "actor", is_id=True)
        for v in as_list(lookup(doc, "userIdentity.accessKeyId")):
            m.add(v, NameType.access_key_id, IdentityKind.access_key, "credential")
        for v in as_list(lookup(doc, "userIdentity.arn")):
            m.add(v, NameType.arn, None, "actor")
        for v in as_list(lookup(doc, "userIdentity.sessionContext.sessionIssuer.userName")):
            m.add(v, NameType.username, IdentityKind.service_account, "actor")
    return m
