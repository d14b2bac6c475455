"""The worker's emitter: applied actions in the audit chain → SETs → push workflows.

It reads ``action.result`` and ``action.reverted`` records after a cursor kept in the SSF
store, queues the SETs each calls for (:meth:`Transmitter.announce`, idempotent), records
``ssf.set_queued`` in the audit chain, then advances the cursor. A crash between queueing
and the cursor only makes it announce the same records again, which queues nothing new.
Push streams with new SETs get a ``kick`` (signal-with-start of their
:class:`~workflows.ssf_delivery.SsfPushWorkflow`).
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from stanch.audit import AuditStore
from stanch.config import Settings
from stanch.inventory import Inventory, load_inventory
from stanch.logging import get_logger
from stanch.models import AuditEvent, AuditRecord, AuditType, IdentityContext
from stanch.ssf.client import PUSH, sleep
from stanch.ssf.keys import KeyStore
from stanch.ssf.metrics import SSF_SETS_QUEUED, SSF_UNDELIVERED
from stanch.ssf.store import FAILED, PENDING, SsfStore
from stanch.ssf.transmitter import Transmitter

log = get_logger(__name__)
CURSOR = "emit_after_seq"


def issuer_of(settings: Settings) -> str:
    if settings.ssf.issuer:
        return settings.ssf.issuer.rstrip("/")
    if settings.api.public_url:
        return settings.api.public_url.rstrip("/")
    return settings.api.url


class _InventoryOnDemand:
    """The inventory, read the first time a record does not carry its subject (records from
    before actions carried it). The worker need not hold every identity in memory, nor spend
    seconds reading a large inventory, to announce what it did."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._inventory: Inventory | None = None

    def get(self, identity_key: str) -> IdentityContext | None:
        with self._lock:
            if self._inventory is None:
                self._inventory = load_inventory(self.settings)
        return self._inventory.get(identity_key)


def open_transmitter(settings: Settings, store: SsfStore, inventory: Inventory | None = None
                     ) -> Transmitter:
    return Transmitter(issuer_of(settings), store, KeyStore(settings.state_dir / "ssf" / "keys"),
                       inventory if inventory is not None else _InventoryOnDemand(settings),
                       min_verification_interval=settings.ssf.min_verification_interval_seconds)


async def kick(client: Client, settings: Settings, stream_id: str) -> None:
    from workflows.ssf_delivery import SsfPushWorkflow, push_workflow_id

    await client.start_workflow(
        SsfPushWorkflow.run, stream_id, id=push_workflow_id(stream_id),
        task_queue=settings.temporal.task_queue, start_signal="kick",
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


class Emitter:
    def __init__(self, settings: Settings, audit: AuditStore, client: Client,
                 store: SsfStore | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self.client = client
        self.store = store or SsfStore(settings.state_dir / "ssf.db")
        self._transmitter: Transmitter | None = None
        self._kicked: dict[str, int] = {}

    @property
    def transmitter(self) -> Transmitter:
        # Built on first use, inside the loop. The inventory is read only for a record that
        # does not carry its subject; one that does not load is logged and retried then, it
        # does not stop the worker.
        if self._transmitter is None:
            self._transmitter = open_transmitter(self.settings, self.store)
        return self._transmitter

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.once()
            except Exception as e:  # keep announcing after a hiccup (store, Temporal)
                log.error("ssf.emit_error", error=f"{type(e).__name__}: {str(e)[:200]}")
            if await sleep(self.settings.ssf.emit_interval_seconds, stop):
                return

    async def once(self) -> int:
        after = int(await asyncio.to_thread(self.store.get_meta, CURSOR, "0"))
        records = await asyncio.to_thread(
            self.audit.query, types=[AuditType.action_result, AuditType.revert],
            after_seq=after, limit=200)
        if records:
            streams = await asyncio.to_thread(self.store.streams)
            if streams:  # with none, nothing to announce: the cursor moves on
                await self._announce_batch(records)
            await asyncio.to_thread(self.store.set_meta, CURSOR,
                                    str(max(r.seq for r in records)))
        await self.kick_pending()
        return len(records)

    async def _announce_batch(self, records: list[AuditRecord]) -> None:
        """One SSF-store commit for the batch's SETs, one audit commit for its records; the
        caller then moves the cursor. A crash in between announces the batch again, which
        queues nothing new (derived jtis) and records nothing twice (dedup keys)."""
        # In a thread: signing, and reading the inventory for an old record that does not
        # carry its subject, must not stall the worker's event loop.
        queued_to = await asyncio.to_thread(self.transmitter.announce_all, records)
        announced = list(zip(records, queued_to, strict=True))
        queued = [AuditEvent(
            type=AuditType.ssf_set_queued, at=datetime.now(UTC), actor="stanch",
            subject=record.subject, workflow_id=record.workflow_id,
            action_id=record.action_id, reason="announced to SSF receivers",
            data={"streams": streams, "record_seq": record.seq},
            dedup_key=f"ssf-queued:{record.seq}") for record, streams in announced if streams]
        if queued:
            SSF_SETS_QUEUED.labels("action").inc(sum(len(streams) for _, streams in announced))
            await asyncio.to_thread(self.audit.append_many, queued)

    async def kick_pending(self) -> None:
        for stream in await asyncio.to_thread(self.store.streams):
            counts = await asyncio.to_thread(self.store.counts, stream.stream_id)
            for state in (PENDING, FAILED, "refused"):
                SSF_UNDELIVERED.labels(stream.stream_id, state).set(counts.get(state, 0))
            if stream.config.get("delivery", {}).get("method") != PUSH:
                continue
            top = await asyncio.to_thread(self.store.pending_top, stream.stream_id)
            if top is None:
                continue
            if self._kicked.get(stream.stream_id, 0) < top and stream.status == "enabled":
                await kick(self.client, self.settings, stream.stream_id)
                self._kicked[stream.stream_id] = top
