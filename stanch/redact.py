"""Secret redaction, applied before anything is logged or stored in the audit trail.

Two rules: a value under a key that names a secret is replaced whole; a string that looks
like a credential (AWS secret keys, bearer/JWT tokens, `whsec_`/`ghp_` style tokens, PEM
blocks, `password=` pairs) is masked wherever it appears.
"""

from __future__ import annotations

import functools
import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|credential|private[_-]?key|api[_-]?key|authorization|"
    r"cookie|session[_-]?key|client[_-]?secret|signing[_-]?key|access[_-]?token|refresh)",
    re.IGNORECASE,
)
# Keys that contain a secret-ish word but carry an identifier, not a secret.
_SAFE_KEYS = {
    "access_key_id", "accesskeyid", "token_id", "tokenid", "key_id", "keyid", "secret_id",
    "secretid", "secret_type", "secrettype", "token_type", "tokentype", "credential_id",
    "credential_uid", "secret_type_display_name", "kid", "client_id", "session_ids",
    "sessions", "tokens", "credentials", "refresh_tokens", "token_count", "accessor",
    "token_accessor", "secret_id_accessor", "password_last_set", "passwordchanged",
}

_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\b(?:Bearer|Basic|SSWS)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}"),  # JWT
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"),
    re.compile(r"\b(?:gh[pousr]|github_pat)_[A-Za-z0-9_]{16,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\b(?:hvs|hvb|s)\.[A-Za-z0-9]{20,}"),  # Vault/OpenBao tokens
    re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),  # AWS secret key
    re.compile(r"\b(password|passwd|secret|token)=([^\s&]+)", re.IGNORECASE),
]


def _scoped(pat: re.Pattern[str]) -> str:
    flags = ("i" if pat.flags & re.IGNORECASE else "") + ("s" if pat.flags & re.DOTALL else "")
    return f"(?{flags}:{pat.pattern})" if flags else f"(?:{pat.pattern})"


# Matches wherever any of the patterns does: one scan decides whether a string needs the
# substitutions at all (most audited strings hold no credential).
_ANY = re.compile("|".join(_scoped(p) for p in _PATTERNS))


def redact_text(text: str, extra: list[str] | None = None) -> str:
    if _ANY.search(text):
        for pat in _PATTERNS:
            if pat.groups >= 2:
                text = pat.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
            else:
                text = pat.sub(REDACTED, text)
    for s in extra or ():
        if s and len(s) >= 6:
            text = text.replace(s, REDACTED)
    return text


@functools.lru_cache(maxsize=4096)  # the same field names come back in every record
def _is_secret_key(key: str) -> bool:
    k = key.lower()
    if k in _SAFE_KEYS or k.endswith(("_id", "_ids", "_at", "_count", "_uid", "accessor")):
        return False
    return bool(_SECRET_KEY.search(k))


def redact(value: Any, extra: list[str] | None = None) -> Any:
    """Return a copy of ``value`` with secrets masked (dicts, lists, strings; others as-is).

    Iterative, so a document nested to any depth is masked, never a RecursionError.
    """
    if not isinstance(value, dict | list | tuple):
        return _leaf(value, extra)
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        src, dst = stack.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if (isinstance(src, dict) and isinstance(k, str) and _is_secret_key(k)
                    and v not in (None, "", [], {})):
                out: Any = REDACTED if not isinstance(v, bool | int | float) else v
            elif isinstance(v, dict | list | tuple):
                out = {} if isinstance(v, dict) else []
                stack.append((v, out))
            else:
                out = _leaf(v, extra)
            if isinstance(dst, dict):
                dst[k] = out
            else:
                dst.append(out)
    return root


def _leaf(value: Any, extra: list[str] | None) -> Any:
    return redact_text(value, extra) if isinstance(value, str) else value
