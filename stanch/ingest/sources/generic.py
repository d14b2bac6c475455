"""Stanch's own alert schema (docs/alert-schema.md): for scripts, SOARs and anything else.

One alert object, or an array of them. Strict: a wrong type or unknown enum value is a
422 naming the field, because this schema is ours and a silent default would hide a bug.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from stanch.ingest._common import Mentions, build_alert, level_word
from stanch.ingest._doc import as_number, as_str, join, json_type, parse_time, req_str, text
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "generic"
_E = TypeVar("_E", NameType, IdentityKind, Category)
MAX_BATCH = 100


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if isinstance(payload, list):
        if len(payload) > MAX_BATCH:
            raise NormalizeError("$", f"invalid: at most {MAX_BATCH} alerts per request")
        return [_one(item, f"[{i}]", received_at) for i, item in enumerate(payload)]
    return [_one(payload, "", received_at)]


def _one(doc: Any, where: str, received_at: datetime) -> Alert:
    if not isinstance(doc, dict):
        raise NormalizeError(where or "$", f"invalid: expected an object (got {json_type(doc)})")
    alert_id = req_str(doc, "id", where=where)
    mentions = Mentions()
    idents = doc.get("identities", [])
    if not isinstance(idents, list):
        raise NormalizeError(join(where, "identities"), "invalid: expected an array")
    for i, ident in enumerate(idents):
        here = join(where, f"identities[{i}]")
        if not isinstance(ident, dict):
            raise NormalizeError(here, "invalid: expected an object")
        name = req_str(ident, "name", where=here)
        mentions.add(
            name,
            _enum(NameType, ident.get("type"), f"{here}.type"),
            _enum(IdentityKind, ident.get("kind"), f"{here}.kind"),
            as_str(ident.get("role")),
        )
    category = _enum(Category, doc.get("category"), join(where, "category")) or Category.other
    if category is Category.manual:
        raise NormalizeError(join(where, "category"), "invalid: `manual` is reserved for on-call "
                                              "containments (POST /v1/containments)")
    observed = doc.get("observed_at")
    observed_at = parse_time(observed)
    if observed is not None and observed_at is None:
        raise NormalizeError(
            join(where, "observed_at"), "invalid: expected ISO-8601 or epoch seconds"
        )
    grants = doc.get("grants", [])
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise NormalizeError(join(where, "grants"), "invalid: expected an array of strings")
    alert = build_alert(
        SOURCE,
        source_alert_id=alert_id,
        dedup_key=as_str(doc.get("dedup_key")) or alert_id,
        received_at=received_at,
        raw=doc,
        title=text(doc.get("title")),
        description=text(doc.get("description")),
        category=category,
        severity=_level(doc.get("severity"), join(where, "severity")),
        confidence=_level(doc.get("confidence"), join(where, "confidence")),
        mentions=mentions,
        observed_at=observed_at,
    )
    return alert.model_copy(update={"grants": [g[:256] for g in grants[:50]]})


def _enum(cls: type[_E], value: Any, where: str) -> _E | None:
    if value is None:
        return None
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise NormalizeError(where, f"invalid: expected one of {allowed}") from None


def _level(value: Any, where: str) -> Level:
    if value is None:
        return Level.medium
    word = level_word(value)
    if word:
        return word
    n = as_number(value) if not isinstance(value, str) else None
    if n is not None and 0 <= n <= 100:
        return Level.from_score(n)
    raise NormalizeError(
        where, "invalid: expected info|low|medium|high|critical or a number 0-100"
    )
