"""Containment state for pages, asked of the workflows only when it may have changed.

The inbox and the containment list poll every second. Asking 1,000 waiting workflows for
their state on every poll would cost seconds, so each state is kept until the audit chain
says its workflow moved: every change a page shows (an approval requested, a vote, an
escalation, a timeout, an action, a rollback) writes an audit record naming the workflow,
and records arrive in sequence. A workflow with a record newer than the last poll is asked
again, and stays "hot" (asked on every poll) for a few seconds, since its record can land
a moment before the workflow task that wrote it completes. States older than ``max_age``
(5 minutes) are asked again a few per call (oldest first), and the list of waiting workflows is read
from visibility every ``LIST_SECONDS``: both only catch what the chain cannot say (a
workflow terminated by hand in Temporal).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict

from temporalio.client import Client
from temporalio.service import RPCError

from stanch.audit import AuditStore
from stanch.models import AuditRecord, AuditType
from workflows.containment import ContainmentWorkflow
from workflows.containment_types import ContainmentStatus

HOT_SECONDS = 3.0
MAX_AGE_SECONDS = 300.0
LIST_SECONDS = 30.0
LISTED = 1000
REFRESH_PER_CALL = 5  # states past max_age asked again per call, oldest first
FIRST_READS_PER_POLL = 100  # never-seen waiting containments asked per inbox poll
QUERIES_AT_ONCE = 16
_SCAN = 5000
_ALERTS_KEPT = 20_000


class StatusCache:
    def __init__(self, audit: AuditStore, *, max_age: float = MAX_AGE_SECONDS,
                 hot: float = HOT_SECONDS) -> None:
        self._audit = audit
        self._max_age = max_age
        self._hot = hot
        self._states: dict[str, tuple[ContainmentStatus, float]] = {}
        self._touched: dict[str, float] = {}
        self._seen_seq: int | None = None
        self._waiting: set[str] = set()
        self._named: set[str] = set()  # containments the chain named since waiting() ran
        self._listed_at: float | None = None
        self._alerts: OrderedDict[str, list[AuditRecord]] = OrderedDict()
        self._lock = threading.Lock()
        self._turn = asyncio.Lock()
        self.unread = 0

    async def waiting(self, client: Client) -> list[ContainmentStatus]:
        """Containments with a step awaiting approval.

        Which workflows wait is known from visibility (listed at most every
        ``LIST_SECONDS``) and from the audit chain since (every approval requested, decided
        or timed out names its workflow), so a poll does not list 1,000 workflows."""
        await asyncio.to_thread(self._note_changes)
        now = time.monotonic()
        if self._listed_at is None or now - self._listed_at > LIST_SECONDS:
            query = ('WorkflowType = "ContainmentWorkflow" AND ExecutionStatus = "Running" '
                     'AND StanchStatus = "awaiting_approval"')
            self._waiting = {wf.id async for wf in client.list_workflows(query, limit=LISTED)}
            self._listed_at = now
        with self._lock:
            moved, self._named = self._named, set()
        candidates = sorted(self._waiting | moved)
        found = await self.statuses(client, candidates, noted=True, refresh=moved,
                                    first_reads=FIRST_READS_PER_POLL)
        waiting = [s for s in found if s.pending_approvals]
        unread = {w for w in candidates if w not in self._states}
        self._waiting = {s.workflow_id for s in waiting} | unread
        return waiting

    async def statuses(self, client: Client, wids: list[str], *, noted: bool = False,
                       refresh: set[str] | frozenset[str] = frozenset(),
                       first_reads: int | None = None) -> list[ContainmentStatus]:
        """The state of each listed workflow (those that answer), fresh where it moved.

        ``first_reads`` bounds how many never-seen workflows one call asks (the rest come
        on the next calls, and ``unread`` says how many are left), so the first poll after
        a restart with 1,000 waiting does not take seconds; concurrent calls take turns,
        so several people polling do not ask the same workflows at once."""
        if not noted:
            await asyncio.to_thread(self._note_changes)
        async with self._turn:
            now = time.monotonic()
            known = [w for w in wids if w in self._states]
            unknown = [w for w in wids if w not in self._states]
            moved = [w for w in known if w in refresh or self._moved(w, now)]
            chosen = set(moved)
            expired = sorted((w for w in known if w not in chosen and self._expired(w, now)),
                             key=lambda w: self._states[w][1])[:REFRESH_PER_CALL]
            reads = unknown if first_reads is None else unknown[:first_reads]
            self.unread = len(unknown) - len(reads)
            gate = asyncio.Semaphore(QUERIES_AT_ONCE)

            async def ask(wid: str) -> None:
                async with gate:
                    try:
                        st: ContainmentStatus = await client.get_workflow_handle(wid).query(
                            ContainmentWorkflow.status)
                    except RPCError:
                        self._states.pop(wid, None)  # closed or gone
                        return
                self._states[wid] = (st, time.monotonic())

            await asyncio.gather(*(ask(w) for w in [*moved, *reads, *expired]))
        return [self._states[w][0] for w in wids if w in self._states]

    async def status(self, client: Client, wid: str) -> ContainmentStatus | None:
        found = await self.statuses(client, [wid])
        return found[0] if found else None

    def alert_records(self, alert_id: str) -> list[AuditRecord]:
        """The alert as received (records of an alert id never change once written)."""
        with self._lock:
            if alert_id in self._alerts:
                self._alerts.move_to_end(alert_id)
                return self._alerts[alert_id]
        records = self._audit.query(alert_id=alert_id, limit=2, types=[
            AuditType.alert_received, AuditType.manual_containment])
        with self._lock:
            if records:
                self._alerts[alert_id] = records
                if len(self._alerts) > _ALERTS_KEPT:
                    self._alerts.popitem(last=False)
        return records

    def _moved(self, wid: str, now: float) -> bool:
        """Never asked, or named by an audit record in the last few seconds."""
        if wid not in self._states:
            return True
        touched = self._touched.get(wid)
        return touched is not None and now - touched < self._hot

    def _expired(self, wid: str, now: float) -> bool:
        return now - self._states[wid][1] > self._max_age

    def _note_changes(self) -> None:
        with self._lock:
            if self._seen_seq is None:
                self._seen_seq = self._audit.head()[0]
                return
            now = time.monotonic()
            while True:
                records = self._audit.query(after_seq=self._seen_seq, limit=_SCAN)
                for r in records:
                    if r.workflow_id:
                        self._touched[r.workflow_id] = now
                        if r.workflow_id.startswith("containment-"):
                            self._named.add(r.workflow_id)
                if records:
                    self._seen_seq = records[-1].seq
                if len(records) < _SCAN:
                    break
            if len(self._named) > LISTED:
                self._named.clear()
                self._listed_at = None  # too many to ask one by one: list again
            for wid in [w for w, at in self._touched.items() if now - at > self._hot]:
                del self._touched[wid]
            for wid in [w for w, (_, at) in self._states.items()
                        if now - at > 4 * self._max_age]:
                del self._states[wid]  # unused for long: keep memory bounded
