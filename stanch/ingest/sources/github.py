"""GitHub secret scanning: the ``secret_scanning_alert`` webhook.

The leaked credential is the identity. GitHub sends the secret itself in ``alert.secret``:
it is never kept — the raw copy masks it, and the mention is the AWS access key id (an
identifier, not a secret) or, for other tokens, ``<secret_type>:sha256:<16 hex>``, a
fingerprint an inventory can store. The dedup key ignores ``action``: created, validated
and reopened deliveries of one alert are one alert.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from stanch.ingest._common import Mentions, build_alert
from stanch.ingest._doc import json_type, opt_str, parse_time, req_obj, req_str
from stanch.ingest.errors import NormalizeError
from stanch.models import Alert, Category, IdentityKind, Level, NameType

SOURCE = "github"
_AWS_KEY_IN = re.compile(r"\b((?:AKIA|ASIA)[A-Z0-9]{12,20})\b")
_VALIDITY = {"active": Level.high, "inactive": Level.low, "unknown": Level.medium}


def fingerprint(secret_type: str, secret: str) -> str:
    return f"{secret_type}:sha256:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def normalize(payload: Any, received_at: datetime) -> list[Alert]:
    if not isinstance(payload, dict):
        raise NormalizeError("$", f"invalid: expected an object (got {json_type(payload)})")
    alert = req_obj(payload, "alert")
    number = req_str(alert, "number", where="alert")
    repo = req_str(payload, "repository.full_name")
    secret_type = opt_str(alert, "secret_type") or "unknown_secret"
    display = opt_str(alert, "secret_type_display_name") or secret_type
    secret = alert.get("secret") if isinstance(alert.get("secret"), str) else None
    public = payload.get("action") == "publicly_leaked" or alert.get("publicly_leaked") is True \
        or _is_public(payload)
    key = f"{repo}#{number}"
    return [build_alert(
        SOURCE,
        source_alert_id=key,
        dedup_key=key,
        received_at=received_at,
        raw=payload,
        title=f"{display} leaked in {repo}",
        description=f"GitHub secret scanning alert {number} ({secret_type}), "
                    f"action {opt_str(payload, 'action') or 'unknown'}",
        category=Category.leaked_secret,
        severity=Level.critical if public else Level.high,
        confidence=_VALIDITY.get((opt_str(alert, "validity") or "").lower(), Level.medium),
        mentions=_mentions(secret_type, secret),
        observed_at=parse_time(alert.get("created_at")),
        secrets=[secret] if secret else None,
    )]


def _is_public(payload: dict[str, Any]) -> bool:
    repo = payload.get("repository")
    return isinstance(repo, dict) and (repo.get("private") is False
                                       or repo.get("visibility") == "public")


def _mentions(secret_type: str, secret: str | None) -> Mentions:
    m = Mentions()
    if not secret:
        return m
    aws = _AWS_KEY_IN.search(secret) if secret_type.startswith("aws") or "AKIA" in secret \
        or "ASIA" in secret else None
    if aws:
        m.add(aws.group(1), NameType.access_key_id, IdentityKind.access_key, "leaked_credential")
    else:
        m.add(fingerprint(secret_type, secret), NameType.token, IdentityKind.token,
              "leaked_credential")
    return m
