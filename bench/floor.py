"""The floor: the least a durable containment can cost on this Temporal server.

One workflow runs one activity; the activity makes one HTTP POST to the mock IdP
(``/identities/{id}/sessions/revoke`` on a fresh bench identity, so the POST is a real
change in the mock IdP's log, stamped on the same clock as a containment's first write),
the same kind of I/O a containment step does. Anything Stanch spends above this is
Stanch's own overhead.

    python -m bench.floor --address 127.0.0.1:7233 --task-queue bench-floor

runs its worker (as a separate process, like Stanch's worker); :func:`run_floor` drives it.

A second floor, ``FloorEvidenceWorkflow``, does in its one activity the evidence work a
containment step does before it acts, with no Stanch code: it reads the identity
(``GET /identities/{id}``), stores that before-state durably (one row in a SQLite file in
WAL mode with ``synchronous=FULL``, as the audit store commits), then POSTs. It tells how
much of the gap to the bare floor is that evidence and how much is Stanch's orchestration
(``--evidence-db PATH`` names the file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import threading
import time
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


def floor_path(identity: str) -> str:
    return f"/identities/{identity}/sessions/revoke"


class _Poster:
    def __init__(self, evidence_db: str = "floor-evidence.db") -> None:
        self.client: Any = None
        self.evidence_db = evidence_db
        self._db: Any = None
        self._db_lock = threading.Lock()

    def _http(self) -> Any:
        if self.client is None:
            import httpx  # the workflow sandbox re-imports this module; keep it light

            self.client = httpx.AsyncClient(timeout=5.0)
        return self.client

    @activity.defn(name="floor_post")
    async def post(self, url: str) -> int:
        r = await self._http().post(
            url, headers={"Idempotency-Key": activity.info().activity_id})
        r.raise_for_status()
        return int(r.status_code)

    @activity.defn(name="floor_evidence_post")
    async def evidence_post(self, idp: str, identity: str) -> int:
        got = await self._http().get(f"{idp}/identities/{identity}")
        got.raise_for_status()
        await asyncio.to_thread(self.record, identity, got.content)
        r = await self._http().post(f"{idp}{floor_path(identity)}",
                                    headers={"Idempotency-Key": activity.info().activity_id})
        r.raise_for_status()
        return int(r.status_code)

    def record(self, identity: str, before: bytes) -> None:
        """The before-state, committed (WAL, ``synchronous=FULL``: fsync'd as the audit
        store's records are) before the POST."""
        import sqlite3

        with self._db_lock:
            if self._db is None:
                self._db = sqlite3.connect(self.evidence_db, check_same_thread=False)
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("CREATE TABLE IF NOT EXISTS evidence (seq INTEGER PRIMARY "
                                 "KEY, identity TEXT, body TEXT, at REAL)")
            with self._db:
                self._db.execute(
                    "INSERT INTO evidence (identity, body, at) VALUES (?, ?, ?)",
                    (identity, json.dumps({"before": json.loads(before)}), time.time()))


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    @workflow.run
    async def run(self, url: str) -> int:
        result: int = await workflow.execute_activity(
            "floor_post", url, result_type=int, start_to_close_timeout=timedelta(seconds=30))
        return result


@workflow.defn(name="FloorEvidenceWorkflow")
class FloorEvidenceWorkflow:
    @workflow.run
    async def run(self, idp: str, identity: str) -> int:
        result: int = await workflow.execute_activity(
            "floor_evidence_post", args=[idp, identity], result_type=int,
            start_to_close_timeout=timedelta(seconds=30))
        return result


async def serve(address: str, task_queue: str, evidence_db: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    poster = _Poster(evidence_db)
    # Same concurrency limit as Stanch's worker (stanch.worker.build_worker).
    async with Worker(client, task_queue=task_queue,
                      workflows=[FloorWorkflow, FloorEvidenceWorkflow],
                      activities=[poster.post, poster.evidence_post],
                      max_concurrent_activities=100):
        print("floor.started", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--evidence-db", default="floor-evidence.db")
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue, args.evidence_db))


if __name__ == "__main__":
    main()
