"""Refused webhooks: counted and logged one by one, audited only in aggregate.

Anyone can send a bad webhook, so a record per refusal would let an anonymous caller grow
the audit chain (and the SIEM export) at will, with text of its choosing. Instead each API
process writes at most one ``alert.refused`` record per source and reason per minute, with
the count; the actor is always ``stanch``, and the source is a configured source name or
``unknown`` — never the text of the URL.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from stanch.audit import AuditStore
from stanch.logging import get_logger
from stanch.models import AuditEvent, AuditType

log = get_logger("stanch.api.refused")


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


class RefusalTally:
    def __init__(self, audit: AuditStore, *, window: timedelta = timedelta(minutes=1)) -> None:
        self._audit = audit
        self._window = window
        self._counts: Counter[tuple[str, str, int]] = Counter()
        self._opened: datetime | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._instance = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # one API process

    def note(self, *, source: str, code: str, status: int, now: datetime) -> None:
        """Count one refusal (``source`` already reduced to a known name or ``unknown``)."""
        if self._opened is None:
            self._opened = _minute(now)
        self._counts[(source, code, status)] += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_after(now))

    async def _flush_after(self, now: datetime) -> None:
        end = _minute(now) + self._window
        await asyncio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()))
        await self.flush()

    async def flush(self) -> int:
        """Write one record per (source, reason) counted so far; returns how many."""
        async with self._lock:
            counts, opened = self._counts, self._opened
            self._counts, self._opened = Counter(), None
        if not counts or opened is None:
            return 0
        closed = datetime.now(UTC)
        events = [AuditEvent(
            type=AuditType.alert_refused, at=closed, actor="stanch",
            reason=f"{n} webhook deliveries for source {source!r} refused ({code}, HTTP {status})",
            data={"source": source, "code": code, "status": status, "count": n,
                  "from": opened.isoformat(), "to": closed.isoformat(), "api": self._instance},
            dedup_key=f"refused:{self._instance}:{opened.isoformat()}:{source}:{code}")
            for (source, code, status), n in sorted(counts.items())]
        try:
            await asyncio.to_thread(self._audit.append_many, events)
        except Exception as err:  # counted and logged already; the chain misses a summary
            log.error("alert.refused.audit_failed", error=type(err).__name__,
                      records=len(events))
            return 0
        return len(events)

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
        await self.flush()
