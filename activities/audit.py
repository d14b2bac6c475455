"""Audit activities: append records to the hash-chained store from workflows.

The worker builds ``AuditActivities(store)`` with the process's store and registers both
methods. Appends are idempotent on ``event.dedup_key``; an event without one gets a key
from the Temporal activity id, which is the same on every retry of one scheduled activity,
so a retry after a lost reply never writes the record twice.
"""

from __future__ import annotations

import asyncio

from temporalio import activity

from stanch.audit import AuditStore
from stanch.models import AuditEvent


def _retry_safe(event: AuditEvent, index: int | None = None) -> AuditEvent:
    if event.dedup_key is not None or not activity.in_activity():
        return event
    info = activity.info()
    key = f"temporal:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}"
    if index is not None:
        key += f":{index}"
    return event.model_copy(update={"dedup_key": key})


class AuditActivities:
    """Activities bound to one audit store."""

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    @activity.defn(name="record_audit")
    async def record_audit(self, event: AuditEvent) -> int:
        """Append one record; returns its seq (the existing one for a repeated dedup key)."""
        record = await asyncio.to_thread(self.store.append, _retry_safe(event))
        return record.seq

    @activity.defn(name="record_audit_batch")
    async def record_audit_batch(self, events: list[AuditEvent]) -> list[int]:
        """Append several records in one transaction; returns their seqs in order."""
        batch = [_retry_safe(e, i) for i, e in enumerate(events)]
        records = await asyncio.to_thread(self.store.append_many, batch)
        return [r.seq for r in records]
