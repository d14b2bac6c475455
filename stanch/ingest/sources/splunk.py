"""Splunk webhook alert action: ``{result, sid, results_link, search_name, owner, app}``.

``result`` is the first row of the search; identities come from its CIM columns. The same
search re-run (new ``sid``) is a new alert; the same delivery retried is not: the dedup key
is ``sid`` plus a hash of the row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert, category_from_text, level_word
from stanch.ingest._doc import (
    as_list,
    as_number,
    json_type,
    opt_str,
    parse_time,
    req_str,
    stable_hash,
    text,
)
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "splunk"


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    sid = req_str(payload, "sid")
    row = payload.get("result")
    if row is None:
        row = {}
    if not isinstance(row, dict):
        raise NormalizeError("result", f"invalid: expected an object (got {json_type(row)})")
    search = opt_str(payload, "search_name") or ""
    return [build_alert(
        SOURCE,
        source_alert_id=sid,
        dedup_key=f"{sid}:{stable_hash(row)}",
        received_at=received_at,
        raw=payload,
        title=text(search or opt_str(row, "rule_name", "signature")),
        description=text(opt_str(row, "rule_description", "description", "signature")),
        category=_category(row, search),
        severity=_level(row, "severity", "urgency", "risk_score"),
        confidence=_level(row, "confidence"),
        mentions=_mentions(row),
        observed_at=parse_time(row.get("_time")),
    )]


def _category(row: dict[str, Any], search: str) -> Category:
    given = opt_str(row, "stanch_category", "category")
    if given is not None and given in Category.__members__ and given != "manual":
        return Category(given)
    return category_from_text(search, opt_str(row, "rule_name"), opt_str(row, "signature"),
                              opt_str(row, "category"))


def _level(row: dict[str, Any], *fields: str) -> Level:
    for f in fields:
        v = row.get(f)
        word = level_word(v)
        if word:
            return word
        n = as_number(v)
        if n is not None and 0 <= n <= 100:
            return Level.from_score(n)
    return Level.medium


def _mentions(row: dict[str, Any]) -> Mentions:
    m = Mentions()
    # Splunk sends multivalue fields as lists; every value is a mention.
    for v in as_list(row.get("src_user")):
        m.add(v, None, None, "actor")
    for field in ("user", "user_email", "user_id"):
        for v in as_list(row.get(field)):
            m.add(v, None, None, "user")
    for v in as_list(row.get("access_key_id")):
        m.add(v, NameType.access_key_id, IdentityKind.access_key, "credential")
    for v in as_list(row.get("app_id")):
        m.add(v, NameType.app_id, None, "app")
    return m
