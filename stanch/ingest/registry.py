"""The source registry: name → normalizer, and :func:`normalize` over it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from stanch.ingest.errors import NormalizeError, UnknownSource
from stanch.ingest.sources import (
    crowdstrike,
    datadog,
    elastic,
    generic,
    github,
    guardduty,
    ocsf,
    sentinel,
    splunk,
    ssf,
)
from stanch.models import Alert

Normalizer = Callable[[Any, datetime], list[Alert]]
"""``(payload, received_at) -> alerts``: pure, no I/O, no clock."""

SOURCES: dict[str, Normalizer] = {
    "generic": generic.normalize,
    "splunk": splunk.normalize,
    "elastic": elastic.normalize,
    "sentinel": sentinel.normalize,
    "crowdstrike": crowdstrike.normalize,
    "datadog": datadog.normalize,
    "guardduty": guardduty.normalize,
    "github": github.normalize,
    "ocsf": ocsf.normalize,
    "ssf": ssf.normalize,
}


def normalize(source: str, payload: Any, received_at: datetime) -> list[Alert]:
    """Normalize one parsed payload from ``source`` into zero or more alerts."""
    fn = SOURCES.get(source)
    if fn is None:
        raise UnknownSource(f"unknown alert source `{source[:64]}`; known: "
                            f"{', '.join(sorted(SOURCES))}")
    try:
        return fn(payload, received_at)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "$"
        raise NormalizeError(where, f"invalid: {first['msg']}") from None
