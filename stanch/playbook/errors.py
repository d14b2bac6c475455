"""Errors that point at a file, a line and a field, so an author can fix them in one go.

Pure: no I/O, imported by the loader and by the inventory alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class LocatedError:
    """One problem in one file, e.g.
    ``playbooks/leaked-secret.yaml:14: ladder[2].approval.quorum: must be ≥ 1 (got 0)``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class LoadError(Exception):
    """A set of files did not load; ``errors`` lists every problem found, in file order."""

    def __init__(self, errors: Sequence[LocatedError]) -> None:
        self.errors: list[LocatedError] = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class PlaybookError(LoadError):
    """One or more playbook files are invalid."""


def format_path(loc: Sequence[str | int]) -> str:
    """``("ladder", 2, "approval", "quorum")`` → ``ladder[2].approval.quorum``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(error: Mapping[str, Any]) -> str:
    """A pydantic error in the words an author needs: ``must be ≥ 1 (got 0)``."""
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    got = _show(error.get("input"))
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field missing"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": "≥", "greater_than": ">",
                "less_than_equal": "≤", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound} (got {got})"
    if kind in ("enum", "literal_error"):
        return f"must be one of {ctx.get('expected', '?')} (got {got})"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length', 1)} item(s)"
    if kind == "value_error":
        return str(error.get("msg", "")).removeprefix("Value error, ")
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]} (got {got})"
    msg = str(error.get("msg", "invalid"))
    return f"{msg[:1].lower()}{msg[1:]} (got {got})"


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "float_type": "a number",
    "float_parsing": "a number",
    "datetime_type": "a date-time",
    "datetime_parsing": "a date-time",
    "datetime_from_date_parsing": "a date-time",
}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
