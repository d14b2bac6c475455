"""Ingestion: alert sources → authenticated, normalized :class:`~stanch.models.Alert`s.

Public API (the API route and CLI code against these names):

- :data:`SOURCES`, :func:`normalize` — pure normalizers, one per source;
- :func:`authenticate`, :class:`ReplayCache`, :class:`ReplayStore` — webhook verification;
- :func:`receive` — size, source, auth, JSON, normalize, metrics, dead letters;
- :class:`DeadLetterStore` — what authenticated but did not normalize;
- errors: :class:`IngestError` and its subclasses, each with ``status`` and ``reason``.
"""

from __future__ import annotations

from stanch.ingest.auth import DEFAULT_REPLAY_CACHE, ReplayCache, ReplayStore, authenticate
from stanch.ingest.dead_letter import DeadLetter, DeadLetterStore
from stanch.ingest.errors import (
    AuthError,
    IngestError,
    InvalidPayload,
    NormalizeError,
    PayloadTooLarge,
    UnknownSource,
)
from stanch.ingest.metrics import ALERTS_RECEIVED, ALERTS_REFUSED, IngestRefusal
from stanch.ingest.receive import receive
from stanch.ingest.registry import SOURCES, Normalizer, normalize

__all__ = [
    "ALERTS_RECEIVED",
    "ALERTS_REFUSED",
    "DEFAULT_REPLAY_CACHE",
    "SOURCES",
    "AuthError",
    "DeadLetter",
    "DeadLetterStore",
    "IngestError",
    "IngestRefusal",
    "InvalidPayload",
    "NormalizeError",
    "Normalizer",
    "PayloadTooLarge",
    "ReplayCache",
    "ReplayStore",
    "UnknownSource",
    "authenticate",
    "normalize",
    "receive",
]
