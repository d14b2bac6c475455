"""One webhook delivery, start to finish: size, source, signature, JSON, normalize.

The API route calls :func:`receive` and maps :class:`IngestError` to its ``status``. Every
refusal is counted and logged with its reason code (never a secret); a delivery that
authenticated but did not normalize goes to the dead-letter store first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stanch.config import Settings
from stanch.ingest.auth import ReplayStore, authenticate
from stanch.ingest.dead_letter import DeadLetterStore
from stanch.ingest.errors import (
    IngestError,
    InvalidPayload,
    NormalizeError,
    PayloadTooLarge,
    UnknownSource,
)
from stanch.ingest.metrics import ALERTS_RECEIVED, ALERTS_REFUSED
from stanch.ingest.registry import SOURCES, normalize
from stanch.logging import get_logger
from stanch.models import Alert
from stanch.redact import REDACTED, redact_text
from stanch.text import find_bad_text

MAX_DEPTH = 64
# Headers a dead letter keeps in clear (enough to replay and debug); every other value —
# custom auth and signature headers included — is masked.
_KEEP_HEADERS = frozenset({
    "content-type", "content-length", "content-encoding", "user-agent", "host", "accept",
    "webhook-id", "webhook-timestamp", "x-github-event", "x-github-delivery",
    "x-github-hook-id", "x-request-id", "x-forwarded-for",
})

log = get_logger("stanch.ingest")


async def receive(
    source: str,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    settings: Settings,
    now: datetime,
    dead_letters: DeadLetterStore | None,
    replay_cache: ReplayStore | None = None,
) -> list[Alert]:
    """Authenticate and normalize one delivery; raise :class:`IngestError` to refuse it."""
    label = source if source in SOURCES else "unknown"
    try:
        alerts = await _receive(
            source, headers=headers, query=query, body=body, settings=settings, now=now,
            dead_letters=dead_letters, replay_cache=replay_cache,
        )
    except IngestError as err:
        ALERTS_REFUSED.labels(source=label, reason=err.code).inc()
        log.info("alert.refused", source=label, status=err.status, code=err.code,
                 reason=err.reason, size=len(body))
        raise
    if alerts:
        ALERTS_RECEIVED.labels(source=label).inc(len(alerts))
    return alerts


async def _receive(
    source: str,
    *,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    settings: Settings,
    now: datetime,
    dead_letters: DeadLetterStore | None,
    replay_cache: ReplayStore | None,
) -> list[Alert]:
    limit = settings.api.max_body_bytes
    if len(body) > limit:
        raise PayloadTooLarge(f"body is {len(body)} bytes; the limit is {limit} "
                              f"(api.max_body_bytes)")
    if source not in SOURCES:
        raise UnknownSource(
            f"unknown alert source `{source[:64]}`; known: {', '.join(sorted(SOURCES))}"
        )
    key_id = authenticate(source, headers=headers, query=query, body=body, settings=settings,
                          now=now, replay_cache=replay_cache)
    try:
        payload = _parse(body)
        return normalize(source, payload, now)
    except (NormalizeError, InvalidPayload) as err:
        await _dead_letter(dead_letters, source, headers, body, err, now, key_id)
        raise
    except IngestError:
        raise
    except Exception as exc:
        # A normalizer raises only typed errors; anything else (OverflowError from 10**400,
        # a wrong type deep in a payload) is a payload it could not read: kept, and a 422.
        typed = NormalizeError("$", f"invalid: could not be normalized "
                                    f"({type(exc).__name__}: {redact_text(str(exc))[:200]})")
        log.warning("alert.normalizer_error", source=source, error=type(exc).__name__)
        await _dead_letter(dead_letters, source, headers, body, typed, now, key_id)
        raise typed from None


def _parse(body: bytes) -> Any:
    if not body.strip():
        raise InvalidPayload("empty body: expected a JSON document")
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise InvalidPayload("body is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InvalidPayload(f"body is not JSON: {e.msg} at line {e.lineno} column {e.colno}"
                             ) from None
    except (ValueError, RecursionError):
        raise InvalidPayload("body is not JSON Stanch can read") from None
    if _depth_exceeds(payload, MAX_DEPTH):
        raise InvalidPayload(f"JSON nested deeper than {MAX_DEPTH} levels")
    bad = find_bad_text(payload)
    if bad is not None:
        raise InvalidPayload(f"{bad[0]}: text {bad[1]}")
    return payload


def _depth_exceeds(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def _dead_letter(
    store: DeadLetterStore | None,
    source: str,
    headers: Mapping[str, str],
    body: bytes,
    err: IngestError,
    now: datetime,
    key_id: str,
) -> None:
    if store is None:
        return
    kept = {str(k): (str(v) if str(k).lower() in _KEEP_HEADERS else REDACTED)
            for k, v in headers.items()}
    try:
        dl_id = await asyncio.to_thread(store.put, source, kept, body, err.reason, now)
    except Exception as e:
        # Answering 422 would tell the sender to give up on a payload we did not keep;
        # a 503 makes it retry once the store is back.
        log.error("alert.dead_letter_failed", source=source, error=type(e).__name__)
        raise IngestError("could not keep the undeliverable payload; retry later",
                          status=503, code="dead_letter_unavailable") from None
    log.info("alert.dead_letter", source=source, dead_letter_id=dl_id, key_id=key_id,
             reason=err.reason)
