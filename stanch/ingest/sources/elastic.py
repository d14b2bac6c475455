"""Elastic Security / Kibana webhook connector.

The action body is a Mustache template; the documented one (docs/alert-schema.md) is
``{"context": {"alerts": {{{context.alerts}}}}, "rule": {...}}``. Alerts carry
``kibana.alert.*`` keys either flattened (``"kibana.alert.uuid"``) or nested; both are read.
One body may hold many alerts: each becomes one Alert.
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

SOURCE = "elastic"
MAX_ALERTS = 500


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    alerts, where = _alerts(payload)
    if len(alerts) > MAX_ALERTS:
        raise NormalizeError(where, f"invalid: at most {MAX_ALERTS} alerts per request")
    rule = lookup(payload, "rule") if isinstance(payload, dict) else None
    return [_one(a, f"{where}[{i}]", rule, received_at) for i, a in enumerate(alerts)]


def _alerts(payload: Any) -> tuple[list[Any], str]:
    if isinstance(payload, list):
        return payload, ""
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    for path in ("context.alerts", "alerts"):
        found = lookup(payload, path)
        if found is not None:
            if not isinstance(found, list):
                raise NormalizeError(path, f"invalid: expected an array (got {json_type(found)})")
            return found, path
    if lookup(payload, "kibana.alert") is not None:  # one alert document posted as is
        return [payload], "$"
    raise NormalizeError("context.alerts", "missing")


def _one(doc: Any, where: str, rule: Any, received_at: datetime) -> Alert:
    where = where.removeprefix("$")
    if not isinstance(doc, dict):
        raise NormalizeError(where, f"invalid: expected an object (got {json_type(doc)})")
    uuid = req_str(doc, "kibana.alert.uuid", where=where)
    rule_name = opt_str(doc, "kibana.alert.rule.name") or opt_str(rule, "name") or ""
    tags = [t for t in as_list(first(doc, "kibana.alert.rule.tags")) if isinstance(t, str)]
    category = category_from_text(rule_name, *tags)
    if category is Category.other:
        tactics = [opt_str(t, "tactic.name") for t in
                   as_list(lookup(doc, "kibana.alert.rule.threat")) if isinstance(t, dict)]
        category = category_from_tactics(tactics)
    risk = as_number(lookup(doc, "kibana.alert.risk_score"))
    severity = level_word(lookup(doc, "kibana.alert.severity")) or (
        Level.from_score(risk) if risk is not None else Level.medium
    )
    return build_alert(
        SOURCE,
        source_alert_id=uuid,
        dedup_key=uuid,
        received_at=received_at,
        raw=doc,
        title=text(rule_name),
        description=text(first(doc, "kibana.alert.reason", "kibana.alert.rule.description")),
        category=category,
        severity=severity,
        # Kibana has no confidence; the rule's risk score is the closest signal.
        confidence=Level.from_score(risk) if risk is not None else Level.medium,
        mentions=_mentions(doc),
        observed_at=parse_time(first(doc, "kibana.alert.original_time", "@timestamp")),
    )


def _mentions(doc: dict[str, Any]) -> Mentions:
    m = Mentions()
    user = IdentityKind.user
    for v in as_list(lookup(doc, "user.email")):
        m.add(v, NameType.email, user, "actor")
    domain = opt_str(doc, "user.domain")
    for v in as_list(lookup(doc, "user.name")):
        if isinstance(v, str) and domain and "\\" not in v and "@" not in v:
            m.add(f"{domain}\\{v}", NameType.domain_user, None, "actor")
        m.add(v, None, None, "actor")
    for v in as_list(lookup(doc, "user.id")):
        m.add(v, None, None, "actor", is_id=True)
    m.add(lookup(doc, "aws.cloudtrail.user_identity.access_key_id"), NameType.access_key_id,
          IdentityKind.access_key, "credential")
    m.add(lookup(doc, "aws.cloudtrail.user_identity.arn"), NameType.arn, None, "actor")
    m.add(lookup(doc, "okta.actor.alternate_id"), None, user, "actor")
    m.add(lookup(doc, "okta.actor.id"), NameType.other, user, "actor")
    m.add(lookup(doc, "azure.signinlogs.properties.user_principal_name"), NameType.upn, user,
          "actor")
    for v in as_list(lookup(doc, "user.target.email")):
        m.add(v, NameType.email, user, "target")
    for v in as_list(lookup(doc, "user.target.name")):
        m.add(v, None, None, "target")
    return m
