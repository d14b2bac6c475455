"""What the API accepts, declared once so the OpenAPI document carries every bound it enforces.

Each type here validates and documents together: ``Text`` (valid Unicode, no NUL),
``Reason`` (at least 3 characters once trimmed), ``DurationText`` (``30m``, ``1h30m``),
``Timestamp`` (an RFC 3339 date-time with its offset, never a bare number). A value outside
them is a 422 naming the field, never a 500 and never a silent clamp.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from stanch.playbook.schema import parse_duration
from stanch.text import text_problem

# JSON Schema (ECMA-262) and Python read these the same way.
NO_NUL = "^[^\\u0000]*$"
# Whitespace is spelled out: `\\s` means different sets in Python and in ECMA-262.
_WS = " \t\n\r"
REASON_PATTERN = "^[ \\t\\n\\r]*[^ \\t\\n\\r\\u0000][^\\u0000]+[^ \\t\\n\\r\\u0000][ \\t\\n\\r]*$"
# Units in order, each at most once, digits bounded: never zero in all, and never a year or
# more (at most 9w 99d 999h 9999m 99999s, about 212 days), which ISO 8601 durations in
# responses could not spell without a month.
DURATION_PATTERN = ("^(?=[^1-9]*[1-9])(?:[0-9]w)?(?:[0-9]{1,2}d)?(?:[0-9]{1,3}h)?"
                    "(?:[0-9]{1,4}m)?(?:[0-9]{1,5}s)?$")
INT64_MAX = 2**63 - 1


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(f"text {problem}")
    return value


class _ValidText:
    """Annotation: the string must be valid Unicode without NUL (schema: ``NO_NUL``)."""

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_text, handler(source))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        out = handler(schema)
        out.setdefault("pattern", NO_NUL)
        return out


MAX_TEXT = 4096  # characters: a reason, a comment, a name; far past any real one

Text = Annotated[str, Field(max_length=MAX_TEXT), _ValidText()]
"""Any text: valid Unicode (no unpaired surrogate), no NUL, at most ``MAX_TEXT`` characters."""



def _reason(value: str) -> str:
    _check_text(value)
    trimmed = value.strip(_WS)
    if len(trimmed) < 3:
        raise ValueError("a reason of at least 3 characters is required")
    return trimmed


# The patterns are documented, and enforced by the validators (Python's `re`, the same
# reading a schema-driven client uses), not a second time by pydantic's own regex engine.
Reason = Annotated[str, AfterValidator(_reason), Field(
    max_length=MAX_TEXT, json_schema_extra={"pattern": REASON_PATTERN},
    description="Why: at least 3 characters once trimmed; audited.")]
"""A required, meaningful reason: 3 characters or more once trimmed."""


_DURATION = re.compile(DURATION_PATTERN)


NAME_PATTERN = "^[^\\u0000]*[^ \\t\\n\\r\\u0000][^\\u0000]*$"


def _name(value: str) -> str:
    _check_text(value)
    if not value.strip(_WS):
        raise ValueError("must not be blank")
    return value.strip(_WS)


Name = Annotated[str, AfterValidator(_name), Field(
    max_length=256, json_schema_extra={"pattern": NAME_PATTERN})]
"""A name: text that is not blank (trimmed of spaces, tabs and line breaks)."""


def _duration(value: str) -> str:
    if not _DURATION.fullmatch(value):  # `$` alone would let a final newline through
        raise ValueError("must be a duration like 30m, 4h or 1h30m: units in the order w, d, "
                         "h, m, s, each once, with at most 1, 2, 3, 4 and 5 digits")
    try:
        parse_duration(value)
    except ValueError as err:
        raise ValueError(f"duration {err}") from None
    return value


DurationText = Annotated[str, AfterValidator(_duration), Field(
    json_schema_extra={"pattern": DURATION_PATTERN},
    description="A duration: units in the order w, d, h, m, s, each at most once (at most "
                "9w 99d 999h 9999m 99999s), e.g. `30m`, `4h`, `1h30m`; longer than zero.")]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
_OLDEST = datetime.min.replace(tzinfo=UTC)
_NEWEST = datetime.max.replace(tzinfo=UTC)


def parse_timestamp(value: Any) -> datetime:
    """An RFC 3339 date-time → an aware datetime in UTC. Instants before year 1 or after
    9999 in UTC (``0001-01-01T00:00:00+01:00``) come back as the earliest or latest
    instant Python holds: every stored record lies between, so a bound there means the
    same thing."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string, e.g. 2026-01-31T12:00:00Z")
    m = _RFC3339.fullmatch(value)
    if not m:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. "
                         "2026-01-31T12:00:00Z or 2026-01-31T13:00:00+01:00")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or ".0")[1:][:6].ljust(6, "0"))
    offset = m.group(8)
    if offset in ("Z", "z"):
        delta = timedelta(0)
    else:
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise ValueError(f"offset {offset} is out of range (-23:59 … +23:59)")
        delta = (1 if offset[0] == "+" else -1) * timedelta(hours=oh, minutes=om)
    if second == 60:  # a leap second: the instant just before the next minute
        second, micro = 59, 999_999
    try:
        local = datetime(year or 4, month, day, hour, minute, second, micro)  # 0 → a leap year
    except ValueError as err:
        raise ValueError(f"is not a calendar date-time: {err}") from None
    if year == 0:
        return _OLDEST
    try:
        return local.replace(tzinfo=timezone(delta)).astimezone(UTC)
    except OverflowError:
        return _OLDEST if local.year == 1 else _NEWEST


Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp), Field(
    json_schema_extra={"type": "string", "format": "date-time"})]
"""An instant with its offset (RFC 3339); bare numbers and naive times are refused."""
