"""Shared Signals: a decoded, already validated Security Event Token (one event per SET).

The push and poll receivers (``stanch.ssf.receiver``) verify the signature, issuer,
audience and time before calling this; ``stanch playbook simulate`` calls it on a SET
from a file. The dedup key is ``iss`` + ``jti``: a redelivered SET is the same alert.
Subjects (RFC 9493): ``email`` → an email mention; ``iss_sub`` → the subject id (as the
IdP's own user id, e.g. an Okta ``00u…``); ``opaque``, ``phone_number``, ``account``,
``aliases``; ``complex`` through its ``user`` member (``session`` and ``device`` are kept
in the raw copy, they name no identity).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert
from stanch.ingest._doc import json_type
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, IdentityKind, NameType
from stanch.ssf.events import ALERT_EVENTS, meaning

SOURCE = "ssf"


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected SET claims (got {json_type(payload)})")
    iss, jti = payload.get("iss"), payload.get("jti")
    if not isinstance(iss, str) or not iss:
        raise NormalizeError("iss", "missing")
    if not isinstance(jti, str) or not jti:
        raise NormalizeError("jti", "missing")
    events = payload.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise NormalizeError("events", "invalid: exactly one event expected")
    (event_type, event), = events.items()
    if event_type not in ALERT_EVENTS:
        raise NormalizeError(f"events.{event_type[:120]}", "invalid: not an event type that "
                             "makes an alert")
    event = event if isinstance(event, dict) else {}
    m = meaning(event_type, event)
    mentions = Mentions()
    _subject(payload.get("sub_id"), mentions)
    reason = _text(event.get("reason_admin")) or _text(event.get("reason_user")) or ""
    short = event_type.rsplit("/", 1)[-1]
    return [build_alert(
        SOURCE,
        source_alert_id=jti,
        dedup_key=f"{iss}\x00{jti}",
        received_at=received_at,
        raw=payload,
        title=f"Shared Signals: {m.name} ({short})",
        description=f"{short} from {iss}" + (f": {reason}" if reason else "")
        + (f" (txn {payload['txn']})" if isinstance(payload.get("txn"), str) else ""),
        category=m.category,
        severity=m.severity,
        confidence=m.confidence,
        mentions=mentions,
        observed_at=_time(event.get("event_timestamp")) or _time(payload.get("iat")),
    )]


def _subject(sub: Any, mentions: Mentions, *, depth: int = 0) -> None:
    if not isinstance(sub, dict) or depth > 2:
        return
    fmt = sub.get("format")
    if fmt == "email":
        mentions.add(sub.get("email"), NameType.email, role="subject")
    elif fmt == "iss_sub":
        mentions.add(sub.get("sub"), NameType.other, role="subject")
    elif fmt == "opaque":
        mentions.add(sub.get("id"), NameType.other, role="subject")
    elif fmt == "phone_number":
        mentions.add(sub.get("phone_number"), NameType.other, role="subject")
    elif fmt == "account":
        uri = sub.get("uri")
        if isinstance(uri, str):
            name = uri.removeprefix("acct:")
            mentions.add(name, NameType.email if "@" in name else NameType.username,
                         role="subject")
    elif fmt == "aliases":
        for ident in sub.get("identifiers") or []:
            _subject(ident, mentions, depth=depth + 1)
    elif fmt == "complex":
        _subject(sub.get("user"), mentions, depth=depth + 1)
        app = sub.get("application")
        if isinstance(app, dict) and app.get("format") == "opaque":
            mentions.add(app.get("id"), NameType.app_id, IdentityKind.oauth_app, "application")


def _text(value: Any) -> str | None:
    """``reason_admin`` is a map of language tag → text; prefer English."""
    if isinstance(value, str):
        return value[:500]
    if isinstance(value, dict) and value:
        for tag in ("en", "en-US", "en-GB"):
            if isinstance(value.get(tag), str):
                return str(value[tag])[:500]
        first = next(iter(value.values()))
        return first[:500] if isinstance(first, str) else None
    return None


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None
