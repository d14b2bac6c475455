"""The API's side of the delivery memory (:mod:`stanch.audit.deliveries`): which keys a
delivery has, and answering a repeat from what was remembered.

A failing memory never fails a delivery: the running workflow still deduplicates, so a
recall or remember that raises is logged and the delivery goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import datetime
from typing import Any

from fastapi import Request

from stanch.audit.deliveries import DeliveryMemory
from stanch.logging import get_logger

log = get_logger("stanch.api.deliveries")


class NoReplayRefusal:
    """The API answers a repeated webhook id from the delivery memory (``deduplicated``),
    written once the delivery was handled: a retry of a delivery refused with 503 goes
    through, a repeat of a handled one starts nothing."""

    def check_and_remember(self, key: str, *, now: datetime, ttl_seconds: float) -> bool:
        return True


REMEMBERED_AFTER_DISPATCH = NoReplayRefusal()


def delivery_key(source: str, headers: Any, body: bytes, settings: Any) -> str | None:
    """The sender's own id of this delivery, once its signature held: the Standard Webhooks
    id (signed), or GitHub's ``X-GitHub-Delivery`` (unsigned, so paired with the body's
    digest: a changed header cannot stand for another delivery)."""
    conf = settings.sources.get(source)
    mode = conf.mode if conf is not None else None
    if mode == "standard_webhooks" and headers.get("webhook-id"):
        return f"delivery:{source}:sw:{headers['webhook-id'][:200]}"
    if mode == "github" and headers.get("x-github-delivery"):
        digest = hashlib.sha256(body).hexdigest()[:32]
        return f"delivery:{source}:gh:{headers['x-github-delivery'][:200]}:{digest}"
    return None


async def recall(request: Request, keys: list[str], now: datetime) -> dict[str, Any] | None:
    if not keys:
        return None
    memory: DeliveryMemory = request.app.state.deliveries
    try:
        return await asyncio.to_thread(memory.recall, keys, now=now)
    except Exception as err:  # the running workflow still deduplicates; go on
        log.warning("delivery_memory.unavailable", error=type(err).__name__)
        return None


async def remember(request: Request, keys: list[str], outcome: dict[str, Any],
                   now: datetime) -> None:
    settings = request.app.state.settings
    memory: DeliveryMemory = request.app.state.deliveries
    try:
        await asyncio.to_thread(memory.remember, keys, outcome, now=now,
                                ttl_seconds=settings.api.delivery_retention_hours * 3600)
    except Exception as err:
        log.warning("delivery_memory.unavailable", error=type(err).__name__)


def repeated(outcome: dict[str, Any]) -> dict[str, Any]:
    """A remembered answer, as a repeat: every containment it names is deduplicated."""
    alerts = outcome.get("alerts") if "alerts" in outcome else [outcome]
    for a in alerts or []:
        for c in a.get("containments", []):
            c["deduplicated"] = True
    if "alerts" in outcome:
        outcome["deduplicated"] = True
    return outcome
