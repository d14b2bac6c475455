"""Reading vendor JSON: dotted-path lookup over nested *or* flattened keys, typed getters.

Vendors mix shapes: Elastic sends ``{"kibana.alert.uuid": …}`` or
``{"kibana": {"alert": {"uuid": …}}}`` (or half of each), so :func:`lookup` tries every
split of the path. Getters for required fields raise :class:`NormalizeError` naming the
JSON path; optional getters return ``None`` for absent or ill-typed values.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from stanch.ingest.errors import NormalizeError

_MAX_TEXT = 4000


def lookup(obj: Any, path: str) -> Any:
    """Value at dotted ``path`` in ``obj``; keys may be nested, flattened or mixed."""
    return _lookup(obj, path.split("."))


def _lookup(obj: Any, parts: list[str]) -> Any:
    if not parts:
        return obj
    if not isinstance(obj, dict):
        return None
    # Longest flattened key first: "kibana.alert.uuid" before "kibana".
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in obj:
            found = _lookup(obj[key], parts[k:])
            if found is not None:
                return found
    return None


def first(obj: Any, *paths: str) -> Any:
    """The first non-empty value among ``paths``."""
    for p in paths:
        v = lookup(obj, p)
        if v not in (None, "", [], {}):
            return v
    return None


def as_str(value: Any) -> str | None:
    """A scalar as text; ``None`` for absent, empty, bool, containers."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
        return s or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return str(int(value)) if value.is_integer() else str(value)
    return None


def opt_str(obj: Any, *paths: str) -> str | None:
    for p in paths:
        s = as_str(lookup(obj, p))
        if s is not None:
            return s
    return None


def req_str(obj: Any, path: str, *, where: str = "", alts: tuple[str, ...] = ()) -> str:
    """A required scalar at ``path`` (or one of ``alts``), else NormalizeError at its path."""
    for p in (path, *alts):
        v = lookup(obj, p)
        s = as_str(v)
        if s is not None:
            return s
    v = lookup(obj, path)
    full = f"{where}.{path}" if where else path
    if v is None:
        raise NormalizeError(full, "missing")
    raise NormalizeError(full, f"invalid: expected a string (got {type(v).__name__})")


def req_obj(obj: Any, path: str, *, where: str = "") -> dict[str, Any]:
    v = lookup(obj, path) if path else obj
    full = (f"{where}.{path}" if where and path else where or path) or "$"
    if v is None:
        raise NormalizeError(full, "missing")
    if not isinstance(v, dict):
        raise NormalizeError(full, f"invalid: expected an object (got {_json_type(v)})")
    return v


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if f == f and abs(f) != float("inf") else None
    if isinstance(value, str):
        try:
            f = float(value.strip())
        except ValueError:
            return None
        return f if f == f and abs(f) != float("inf") else None
    return None


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def parse_time(value: Any) -> datetime | None:
    """ISO-8601 text or epoch seconds/milliseconds as an aware UTC datetime; else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        n = float(value)
        if n != n or abs(n) == float("inf"):
            return None
        if n > 1e11:  # milliseconds
            n /= 1000.0
        try:
            return datetime.fromtimestamp(n, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return None
        if re.fullmatch(r"\d{9,13}(\.\d+)?", s):
            return parse_time(float(s))
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        # Python < 3.11 tolerated fewer fraction digits; trim >6 (Sentinel sends 7).
        s = re.sub(r"(\.\d{6})\d+", r"\1", s)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    return None


def text(value: Any, limit: int = _MAX_TEXT) -> str:
    s = as_str(value) or ""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def stable_hash(value: Any, n: int = 16) -> str:
    """Short digest of canonical JSON: key order and whitespace do not change it."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:n]


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if v is None:
        return "null"
    return "object"


def json_type(v: Any) -> str:
    return _json_type(v)


def join(where: str, field: str) -> str:
    """``where`` + ``field`` as a JSON path (``[0]`` + ``id`` → ``[0].id``)."""
    if not where:
        return field
    return f"{where}{field}" if field.startswith("[") else f"{where}.{field}"
