"""The measurements, each against a running :class:`bench.stack.Stack`.

Clocks: send times are the client's wall clock (``time.time()``) taken just before the
request is written; write times are the ``at`` the mock IdP stamps on its change-log
record (its own wall clock, ``datetime.now(UTC)``) inside the write transaction. Both run
on this machine, so they share one clock. A :class:`ChangeWatcher` tails ``/changes``
and resolves the first write per identity; how often it polls changes what it costs, not
what it measures.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psutil
from temporalio.client import Client

from bench.floor import FloorEvidenceWorkflow, FloorWorkflow, floor_path
from bench.http import RETRYABLE, Answer, Http
from bench.ssf_receiver import Receiver
from bench.stack import FLOOR_QUEUE, Stack, contained_id, upn, waiting_id
from stanch.models import containment_workflow_id

Timings = list[float]


def pct(values: Timings, p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(ms: Timings) -> dict[str, float]:
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99),
            "max_ms": max(ms) if ms else math.nan}


async def bounded(n: int, concurrency: int, job: Callable[[int], Awaitable[None]],
                  budget: float | None = None) -> tuple[float, int]:
    """Run job(0..n-1) with ``concurrency`` in flight (a closed loop) until done or until
    ``budget`` seconds have passed (no new job starts after that); return (seconds, started)."""
    counter = iter(range(n))
    started = 0
    start = time.perf_counter()
    deadline = start + budget if budget is not None else math.inf

    async def lane() -> None:
        nonlocal started
        for i in counter:
            started += 1
            await job(i)
            if time.perf_counter() >= deadline:
                return

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return time.perf_counter() - start, started


class AlertRefused(Exception):
    """The API did not answer 202 (e.g. 503: the workflow could not take the alert)."""


class ChangeWatcher:
    """Tails the mock IdP's change log; resolves the wall time of each identity's first write."""

    def __init__(self, http: Http, idp: str, interval: float = 0.02,
                 sink: dict[str, float] | None = None) -> None:
        self.http = http
        self.idp = idp
        self.interval = interval
        self.since = 0
        self.first: dict[str, float] = {}
        self.sink = sink  # every first write, across phases (for the SSF figures)
        self.counts: dict[str, int] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChangeWatcher:
        # Start from the current end of the log: earlier writes belong to earlier phases.
        while True:
            batch = (await self.http.get(f"{self.idp}/changes", params={
                "since": self.since, "limit": 10_000})).json()
            if not batch:
                break
            self.since = batch[-1]["seq"]
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                r = await self.http.get(f"{self.idp}/changes", params={
                    "since": self.since, "limit": 10_000})
                batch = r.json()
            except (*RETRYABLE, TimeoutError):
                batch = []
            for c in batch:
                self.since = c["seq"]
                ident = c["identity_id"]
                self.counts[ident] = self.counts.get(ident, 0) + 1
                if ident not in self.first:
                    at = datetime.fromisoformat(c["at"]).timestamp()
                    self.first[ident] = at
                    if self.sink is not None:
                        self.sink.setdefault(ident, at)
                    fut = self._waiters.pop(ident, None)
                    if fut is not None and not fut.done():
                        fut.set_result(at)
            if len(batch) < 10_000:
                await asyncio.sleep(self.interval)

    async def first_write(self, identity: str, timeout: float = 60.0) -> float:
        if identity in self.first:
            return self.first[identity]
        fut = self._waiters.setdefault(identity, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(fut), timeout)


def alert(alert_id: str, identity: str, *, severity: str = "high",
          confidence: str = "medium") -> dict[str, Any]:
    """A generic privilege-escalation alert naming the new ``prod-admins`` grant."""
    return {"id": alert_id, "title": f"{identity} added to prod-admins",
            "category": "privilege_escalation", "severity": severity,
            "confidence": confidence, "identities": [
                {"name": upn(identity), "type": "upn", "kind": "user"}],
            "grants": ["prod-admins"]}


class Driver:
    """The bench client: an HTTP client for the API and mock IdP, and a Temporal client."""

    def __init__(self, stack: Stack, run_id: str) -> None:
        self.stack = stack
        self.run = run_id
        self.http = Http(connections=200, timeout=60.0)
        self.transport_retries = 0
        self.temporal: Client | None = None
        self.next_contained = 0
        self.errors: list[str] = []
        self.next_waiting = 0
        # CPU seconds used so far, by process (set by the caller; empty when it has none)
        self.cpu: Callable[[], dict[str, float]] = dict
        self.receiver: Receiver | None = None  # the SSF relying party, when there is one
        self.written: dict[str, float] = {}  # identity -> its first IdP write, every phase
        self.floor_ids: set[str] = set()     # the floor's identities (they get no SET)

    async def __aenter__(self) -> Driver:
        self.temporal = await Client.connect(self.stack.temporal)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()

    def take(self, n: int) -> list[str]:
        ids = [contained_id(self.next_contained + i) for i in range(n)]
        self.next_contained += n
        return ids

    def take_waiting(self, n: int) -> list[str]:
        ids = [waiting_id(self.next_waiting + i) for i in range(n)]
        self.next_waiting += n
        return ids

    async def post_alert(self, body: dict[str, Any]) -> tuple[float, float, Answer]:
        """POST one alert; return (wall-clock send time, response ms, response)."""
        sent = time.time()
        t0 = time.perf_counter()
        for attempt in range(3):
            try:
                r = await self.http.post(
                    f"{self.stack.api}/v1/alerts/generic", json=body,
                    headers={"Authorization": f"Bearer {self.stack.source_token}"})
                break
            except RETRYABLE:
                # A keep-alive connection the server closed as we reused it: a SIEM
                # redelivers, and Stanch deduplicates the redelivery.
                self.transport_retries += 1
                if attempt == 2:
                    raise
        return sent, (time.perf_counter() - t0) * 1000, r

    # -------------------------------------------------------------- floor
    async def floor_run(self, watcher: ChangeWatcher, identity: str, *,
                        evidence: bool = False) -> tuple[float, float, float, str]:
        """One floor workflow on a fresh identity: (sent, its POST's write at the mock IdP,
        ms to completion, workflow id); sent and written are wall-clock seconds. With
        ``evidence``, the evidence floor (reads the before-state and records it durably
        before the POST; no Stanch code)."""
        assert self.temporal is not None
        self.floor_ids.add(identity)
        wid = f"floor{'-ev' if evidence else ''}-{self.run}-{uuid.uuid4().hex[:12]}"
        sent = time.time()
        t0 = time.perf_counter()
        if evidence:
            await self.temporal.execute_workflow(
                FloorEvidenceWorkflow.run, args=[self.stack.idp, identity],
                id=wid, task_queue=FLOOR_QUEUE)
        else:
            await self.temporal.execute_workflow(
                FloorWorkflow.run, f"{self.stack.idp}{floor_path(identity)}",
                id=wid, task_queue=FLOOR_QUEUE)
        complete = (time.perf_counter() - t0) * 1000
        return sent, await watcher.first_write(identity), complete, wid

    async def floor_once(self, watcher: ChangeWatcher, identity: str, *,
                         evidence: bool = False) -> tuple[float, float]:
        """(ms from start to its POST's write at the mock IdP — the same event and clock as
        time-to-contain —, ms to completion)."""
        sent, at, complete, _ = await self.floor_run(watcher, identity, evidence=evidence)
        return (at - sent) * 1000, complete

    # -------------------------------------------------------------- time to contain
    async def contain_run(self, watcher: ChangeWatcher, identity: str, tag: str
                          ) -> tuple[float, float, float, str]:
        """One alert: (sent, first write at the mock IdP, ms until the API answered,
        workflow id)."""
        sent, api_ms, r = await self.post_alert(alert(f"{self.run}-{tag}-{identity}", identity))
        if r.status_code != 202:
            raise AlertRefused(f"alert for {identity}: {r.status_code} {r.text[:300]}")
        return sent, await watcher.first_write(identity), api_ms, str(r.json()["workflow_id"])

    async def contain_once(self, watcher: ChangeWatcher, identity: str, tag: str
                           ) -> tuple[float, float]:
        sent, at, api_ms, _ = await self.contain_run(watcher, identity, tag)
        return (at - sent) * 1000, api_ms

    async def park(self, ids: list[str], tag: str, concurrency: int) -> dict[str, str]:
        """Alerts at medium severity and confidence, which wait for approval: their workflow
        ids by identity."""
        wids: dict[str, str] = {}

        async def one(i: int) -> None:
            _, _, r = await self.post_alert(alert(f"{self.run}-{tag}-{ids[i]}", ids[i],
                                                  severity="medium", confidence="medium"))
            if r.status_code != 202:
                raise RuntimeError(f"alert for {ids[i]}: {r.status_code} {r.text[:300]}")
            wids[ids[i]] = r.json()["workflow_id"]

        await bounded(len(ids), concurrency, one)
        return wids

    def failed(self, err: Exception) -> None:
        """An alert that was not contained: counted and shown, and the run goes on."""
        self.errors.append(str(err)[:300])

    async def serial(self, n: int, budget: float) -> dict[str, Any]:
        """Floor, evidence floor and time-to-contain samples in rounds, so all see the same
        machine (it is shared: whatever else runs slows all alike instead of skewing the
        ratio), in a shuffled order within each round: a sample taken right after a
        containment shares the CPU with that containment's tail (its result record, its
        second workflow task), so a fixed order would favour one side. Each sample acts on
        a fresh identity, so every POST is a real change in the log."""
        floor: Timings = []
        floor_done: Timings = []
        evidence: Timings = []
        ttc: Timings = []
        api: Timings = []
        order = random.Random(0)
        async with ChangeWatcher(self.http, self.stack.idp, sink=self.written) as watcher:
            for ident in self.take(min(5, n)):  # warm-up: connections, caches, imports
                await self.floor_once(watcher, self.take(1)[0])
                await self.floor_once(watcher, self.take(1)[0], evidence=True)
                await self.contain_once(watcher, ident, "warm")
            if self.receiver is not None:
                # A first SET proves the stream works end to end (signing key made, push
                # workflow started) before anything is measured, as in a running deployment.
                await self.receiver.first(timeout=120)
            deadline = time.perf_counter() + budget
            for ident in self.take(n):
                for kind in order.sample(("floor", "evidence", "stanch"), 3):
                    if kind == "floor":
                        w, c = await self.floor_once(watcher, self.take(1)[0])
                        floor.append(w)
                        floor_done.append(c)
                    elif kind == "evidence":
                        w, _ = await self.floor_once(watcher, self.take(1)[0], evidence=True)
                        evidence.append(w)
                    else:
                        try:
                            t, a = await self.contain_once(watcher, ident, "serial")
                        except (AlertRefused, TimeoutError) as err:
                            self.failed(err)
                            continue
                        ttc.append(t)
                        api.append(a)
                if time.perf_counter() >= deadline:
                    break
        return {"floor": summary(floor), "floor_complete": summary(floor_done),
                "floor_evidence": summary(evidence),
                "contain": summary(ttc), "api": summary(api)}

    async def floor_throughput(self, n: int, concurrency: int, budget: float
                               ) -> dict[str, Any]:
        """The floor under the same closed loop as :meth:`contain_throughput`: workflows/s =
        written / (last write - first start); latency to the write and to completion."""
        ids = self.take(n)
        loaded: Timings = []
        done_ms: Timings = []
        async with ChangeWatcher(self.http, self.stack.idp, sink=self.written) as watcher:

            async def job(i: int) -> None:
                w, c = await self.floor_once(watcher, ids[i])
                loaded.append(w)
                done_ms.append(c)

            start = time.time()
            await bounded(n, concurrency, job, budget)
            last = max(watcher.first.get(i, 0.0) for i in ids)
        done = len(loaded)
        secs = last - start
        return {"throughput_per_s": done / secs, "n": done, "concurrency": concurrency,
                "seconds": secs, "latency": summary(loaded), "complete": summary(done_ms)}

    async def contain_throughput(self, n: int, concurrency: int, budget: float
                                 ) -> dict[str, Any]:
        """``concurrency`` clients, each posting an alert and waiting for its write before
        the next (the floor's closed loop); alerts/s = contained / (last write - first send)."""
        ids = self.take(n)
        loaded: Timings = []
        async with ChangeWatcher(self.http, self.stack.idp, sink=self.written) as watcher:

            async def job(i: int) -> None:
                try:
                    t, _ = await self.contain_once(watcher, ids[i], "load")
                except (AlertRefused, TimeoutError) as err:
                    self.failed(err)
                    return
                loaded.append(t)

            start = time.time()
            await bounded(n, concurrency, job, budget)
            last = max(watcher.first.get(i, 0.0) for i in ids)
        secs = last - start
        done = len(loaded)
        return {"throughput_per_s": done / secs, "n": done, "concurrency": concurrency,
                "seconds": secs, "latency": summary(loaded)}

    async def settle(self, quiet: float = 0.1, window: float = 0.3, most: float = 20.0
                     ) -> float:
        """Wait until the stack (every process but this one) uses less than ``quiet`` of
        one core over ``window`` seconds, at most ``most`` seconds; return the wait."""
        t0 = time.perf_counter()
        before = self.cpu()
        while time.perf_counter() - t0 < most:
            await asyncio.sleep(window)
            now = self.cpu()
            busy = sum(now[k] - before.get(k, now[k]) for k in now if k != "bench-client")
            before = now
            if busy < quiet * window:
                break
        return time.perf_counter() - t0

    async def throughput(self, rounds: int, n: int, concurrency: int, budget: float
                         ) -> dict[str, Any]:
        """``rounds`` pairs of runs, floor then Stanch, interleaved so a slow spell of the
        machine hits both sides of a pair; the verdicts use the median pair."""
        pairs: list[dict[str, Any]] = []
        deadline = time.perf_counter() + budget
        for r in range(rounds):
            left = max(1.0, deadline - time.perf_counter())
            per_side = left / (2 * (rounds - r))
            # Each run starts on a quiet stack and its CPU is counted until the stack is
            # quiet again: a containment's tail (result record, second workflow task, its
            # SET signed and pushed) would otherwise land on the floor run after it.
            settled = [await self.settle()]
            c0 = self.cpu()
            floor = await self.floor_throughput(n, concurrency, per_side)
            settled.append(await self.settle())
            c1 = self.cpu()
            contain = await self.contain_throughput(n, concurrency, per_side)
            settled.append(await self.settle())
            c2 = self.cpu()
            # What one workflow / one containment cost each process, in CPU ms.
            floor["cpu_ms_each"] = {k: round((c1[k] - c0[k]) * 1000 / max(1, floor["n"]), 1)
                                    for k in c0}
            contain["cpu_ms_each"] = {k: round((c2[k] - c1[k]) * 1000 / max(1, contain["n"]),
                                               1) for k in c0}
            pairs.append({
                "floor": floor, "contain": contain,
                "ratio": contain["throughput_per_s"] / floor["throughput_per_s"],
                "p99_ratio": contain["latency"]["p99_ms"] / floor["latency"]["p99_ms"],
                "settled_s": [round(x, 2) for x in settled],
            })
        ratios = sorted(p["ratio"] for p in pairs)
        median = sorted(pairs, key=lambda p: p["ratio"])[len(pairs) // 2]
        return {"rounds": pairs, "floor": median["floor"], "contain": median["contain"],
                "ratio_median": median["ratio"], "ratio_min": ratios[0],
                "ratio_max": ratios[-1],
                "p99_ratio_median": sorted(p["p99_ratio"] for p in pairs)[len(pairs) // 2],
                "n": sum(p["contain"]["n"] for p in pairs)}

    # -------------------------------------------------------------- storm
    async def storm(self, alerts: int, identities: int, concurrency: int,
                    budget: float) -> dict[str, Any]:
        assert self.temporal is not None
        ids = self.take(identities)
        expected = {containment_workflow_id("mock", i) for i in ids}
        api: Timings = []
        statuses: dict[int, int] = {}
        tag = f"{self.run}-storm"
        started = datetime.now(UTC)
        async with ChangeWatcher(self.http, self.stack.idp, interval=0.2,
                                 sink=self.written) as watcher:

            async def job(i: int) -> None:
                _, ms, r = await self.post_alert(alert(f"{tag}-{i}", ids[i % identities]))
                api.append(ms)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

            secs, sent = await bounded(alerts, concurrency, job, budget)
            for ident in ids[:sent]:
                try:
                    await watcher.first_write(ident, timeout=60)
                except TimeoutError:
                    self.failed(TimeoutError(f"storm: no write for {ident}"))
            await asyncio.sleep(1.0)  # let trailing writes (if any) reach the log
            writes = {i: watcher.counts.get(i, 0) for i in ids}
        query = (f"WorkflowType = 'ContainmentWorkflow' AND "
                 f"StartTime >= '{started.isoformat().replace('+00:00', 'Z')}'")
        seen: dict[str, int] = {}
        for _ in range(50):  # visibility is eventually consistent
            seen = {}
            async for wf in self.temporal.list_workflows(query):
                seen[wf.id] = seen.get(wf.id, 0) + 1
            if expected <= set(seen):
                break
            await asyncio.sleep(0.2)
        audited = _count_audit(self.stack, "alert.received", f"{tag}-")
        runs_per_id = sorted(set(seen.values()))
        expected = {containment_workflow_id("mock", i) for i in ids[:sent]}
        return {
            "alerts": sent, "alerts_planned": alerts, "identities": identities,
            "concurrency": concurrency, "seconds": secs, "alerts_per_s": sent / secs,
            "statuses": statuses, "accepted": statuses.get(202, 0),
            "api": summary(api),
            "workflows_created": len(seen),
            "workflow_runs": sum(seen.values()),
            "one_workflow_per_identity": set(seen) == expected,
            "runs_per_workflow": runs_per_id,
            "alerts_audited": audited,
            "provider_writes": sum(writes.values()),
            "identities_written_once": sum(1 for v in writes.values() if v == 1),
        }

    # -------------------------------------------------------------- approvals
    async def containment(self, wid: str) -> dict[str, Any]:
        r = await self.http.get(f"{self.stack.api}/v1/containments/{wid}", headers={
            "Authorization": f"Bearer {self.stack.admin_token}"})
        r.raise_for_status()
        return dict(r.json())

    async def pending_step(self, wid: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = await self.containment(wid)
            pending = st.get("pending_approvals") or []
            if pending:
                return str(pending[0]["step_id"])
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{wid}: no pending approval after {timeout:.0f}s")

    async def approvals(self, n: int, concurrency: int, budget: float) -> dict[str, Any]:
        ids = self.take(n)
        wids = await self.park(ids, "appr", concurrency)
        steps = {i: await self.pending_step(wids[i]) for i in ids}
        deadline = time.perf_counter() + budget
        rtt: Timings = []
        api: Timings = []
        async with ChangeWatcher(self.http, self.stack.idp, sink=self.written) as watcher:
            for ident in ids:
                sent = time.time()
                t0 = time.perf_counter()
                r = await self.http.post(
                    f"{self.stack.api}/v1/containments/{wids[ident]}/decisions",
                    json={"step": steps[ident], "verdict": "approve", "comment": "bench"},
                    headers={"Authorization": f"Bearer {self.stack.admin_token}"})
                api.append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"decision on {ident}: {r.status_code} {r.text[:300]}")
                rtt.append((await watcher.first_write(ident) - sent) * 1000)
                if time.perf_counter() >= deadline:
                    break
        return {"round_trip": summary(rtt), "decision_api": summary(api)}

    # -------------------------------------------------------------- shared signals
    async def ssf_delivery(self, receiver: Receiver, wait: float = 30.0) -> dict[str, Any]:
        """Every containment that wrote at the IdP announced it to the bench's relying party:
        how many SETs arrived, and how long after the write (arrival - write, one clock)."""
        expected = {i: at for i, at in self.written.items() if i not in self.floor_ids}
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(upn(i) in receiver.arrivals for i in expected):
                break
            await asyncio.sleep(0.25)
        lag = [(receiver.arrivals[upn(i)] - at) * 1000 for i, at in expected.items()
               if upn(i) in receiver.arrivals]
        return {"expected": len(expected), "received_subjects": len(lag),
                "sets_received": receiver.received, "refused": receiver.refused,
                "events": receiver.events, "lag": summary(lag)}

    # -------------------------------------------------------------- memory
    async def waiting_rss(self, n: int, concurrency: int, budget: float) -> dict[str, Any]:
        """Park ``n`` containments on approval (alerts at medium severity and confidence) and
        read the worker's RSS as they accumulate. The worker caches at most 1,000 workflow
        runs (the SDK default); beyond that, waiting containments live in Temporal and an
        evicted run is replayed when its next task comes (a decision, a deadline)."""
        assert self.temporal is not None
        worker = psutil.Process(self.stack.pid("worker"))
        before = worker.memory_info().rss
        ids = self.take_waiting(n)
        failures = 0
        parked = 0
        curve: list[tuple[int, float]] = [(0, before / 2**20)]
        # Only containments this phase starts: the approval phase's, just approved, may
        # still read 'awaiting_approval' in (eventually consistent) visibility.
        started = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        query = ("WorkflowType = 'ContainmentWorkflow' AND StanchStatus = 'awaiting_approval'"
                 f" AND StartTime >= '{started}'")

        async def park(i: int) -> None:
            nonlocal failures, parked
            _, _, r = await self.post_alert(alert(f"{self.run}-wait-{ids[i]}", ids[i],
                                                  severity="medium", confidence="medium"))
            failures += r.status_code != 202
            parked += r.status_code == 202

        async def sample() -> None:
            step = max(1, n // 10)
            mark = step
            while True:
                await asyncio.sleep(0.5)
                if parked >= mark:
                    curve.append((parked, worker.memory_info().rss / 2**20))
                    mark += step

        sampler = asyncio.create_task(sample())
        try:
            secs, n_sent = await bounded(n, concurrency, park, budget)
        finally:
            sampler.cancel()
        waiting = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = (await self.temporal.count_workflows(query)).count
            if waiting >= n_sent - failures:
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        after = worker.memory_info().rss
        curve.append((waiting, after / 2**20))
        return {"containments": n_sent, "planned": n, "waiting": waiting, "failures": failures,
                "seconds_to_park": secs, "parked_per_s": n_sent / secs if secs else 0.0,
                "rss_before_mb": before / 2**20, "rss_mb": after / 2**20,
                "rss_peak_mb": max(mb for _, mb in curve),
                "rss_curve_mb": [[c, round(mb, 1)] for c, mb in curve]}


def _count_audit(stack: Stack, type_: str, source_id_prefix: str) -> int:
    """Records of ``type_`` whose alert's source id starts with the prefix (Stanch alert ids
    are hashes of the dedup key, so the source id in the record body is what we can match)."""
    like = f'%"source_alert_id":"{source_id_prefix}%'
    if stack.audit_dsn is not None:
        import psycopg

        with psycopg.connect(stack.audit_dsn) as pg:
            pg.execute("SET search_path TO stanch_audit")
            got = pg.execute("SELECT COUNT(*) FROM audit_records WHERE type = %s"
                             " AND body::text LIKE %s", (type_, like)).fetchone()
        return int(got[0]) if got else 0
    db = sqlite3.connect(f"file:{stack.state / 'audit.db'}?mode=ro", uri=True, timeout=30)
    try:
        row = db.execute("SELECT COUNT(*) FROM audit_records WHERE type = ? AND body LIKE ?",
                         (type_, like)).fetchone()
        return int(row[0])
    finally:
        db.close()

