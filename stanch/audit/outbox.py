"""Ship audit records to the SIEM: OCSF over HTTPS, from the store's outbox table.

Every append also inserts the record's seq into the outbox in the same transaction, so a
record cannot be stored without being queued. The shipper posts the oldest queued records
as one JSON array of OCSF events (bearer token from configuration) and removes them from
the outbox only after a 2xx. If the SIEM is down it backs off exponentially (with jitter)
and tries again, for ever: delivery is delayed, never lost. Delivery is at least once; each
event's ``metadata.uid`` is the record's chain hash, so the SIEM can drop duplicates.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from stanch.audit.base import AuditStore
from stanch.audit.ocsf import to_ocsf
from stanch.logging import get_logger
from stanch.redact import redact_text

if TYPE_CHECKING:
    from stanch.config import Settings

log = get_logger(__name__)


class ExportError(Exception):
    """The SIEM did not accept a batch; the records stay queued."""


class OutboxShipper:
    """Drains one store's outbox to ``url``. Run :meth:`run` in the worker process."""

    def __init__(
        self,
        store: AuditStore,
        url: str,
        token: str | None = None,
        *,
        batch_size: int = 200,
        poll_interval: float = 2.0,
        min_backoff: float = 1.0,
        max_backoff: float = 300.0,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self.url = url
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._token = token
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._own_client = client is None

    @classmethod
    def from_settings(cls, store: AuditStore, settings: Settings,
                      **kwargs: Any) -> OutboxShipper | None:
        """A shipper for ``settings.audit.export_url``, or None when export is not set up."""
        audit = settings.audit
        if not audit.export_url:
            return None
        token = audit.export_token.get_secret_value() if audit.export_token else None
        return cls(store, audit.export_url, token, **kwargs)

    async def ship_once(self) -> int:
        """Send one batch; returns how many records the SIEM accepted (0: queue empty).
        Raises :class:`ExportError` when the SIEM is unreachable or refuses the batch."""
        records = await asyncio.to_thread(self.store.outbox_pending, self.batch_size)
        if not records:
            return 0
        seqs = [r.seq for r in records]
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"stanch-audit-{records[0].hash}-{records[-1].hash}"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            resp = await self._client.post(self.url, json=[to_ocsf(r) for r in records],
                                           headers=headers)
            resp.raise_for_status()
        except httpx.HTTPError as err:
            reason = redact_text(f"{type(err).__name__}: {err}", [self._token or ""])
            await asyncio.to_thread(self.store.outbox_failed, seqs, reason, datetime.now(UTC))
            raise ExportError(f"SIEM export of records {seqs[0]}..{seqs[-1]} failed: "
                              f"{reason}") from None
        await asyncio.to_thread(self.store.outbox_delivered, seqs)
        log.info("audit.exported", first_seq=seqs[0], last_seq=seqs[-1], count=len(seqs))
        return len(seqs)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Ship until ``stop_event`` is set: drain while there is a backlog, poll when idle,
        back off (doubling up to ``max_backoff``) while the SIEM fails."""
        backoff = self.min_backoff
        try:
            while not stop_event.is_set():
                try:
                    sent = await self.ship_once()
                    backoff = self.min_backoff
                    if sent >= self.batch_size:
                        continue
                    wait = self.poll_interval
                except ExportError as err:
                    log.warning("audit.export_failed", error=str(err), retry_in=backoff)
                    wait = backoff * (0.5 + random.random() / 2)  # noqa: S311 (jitter)
                    backoff = min(backoff * 2, self.max_backoff)
                except Exception as err:  # the store hiccuped: keep the loop alive
                    log.error("audit.export_error", error=str(err))
                    wait = backoff
                try:
                    await asyncio.wait_for(stop_event.wait(), timeout=wait)
                except TimeoutError:
                    pass
        finally:
            if self._own_client:
                await self._client.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
