"""The floor: the least a durable containment can cost on this Temporal server.

One workflow runs one activity; the activity makes one HTTP POST to the mock IdP
(``/identities/{id}/sessions/revoke`` on a fresh bench identity, so the POST is a real
change in the mock IdP's log, stamped on the same clock as a containment's first write),
the same kind of I/O a containment step does. Anything Stanch spends above this is
Stanch's own overhead.

    python -m bench.floor --address 127.0.0.1:7233 --task-queue bench-floor

runs its worker (as a separate process, like Stanch's worker); :func:`run_floor` drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker


def floor_path(identity: str) -> str:
    return f"/identities/{identity}/sessions/revoke"


class _Poster:
    def __init__(self) -> None:
        self.client: Any = None

    @activity.defn(name="floor_post")
    async def post(self, url: str) -> int:
        if self.client is None:
            import httpx  # the workflow sandbox re-imports this module; keep it light

            self.client = httpx.AsyncClient(timeout=5.0)
        r = await self.client.post(url, headers={"Idempotency-Key": activity.info().activity_id})
        r.raise_for_status()
        return r.status_code


@workflow.defn(name="FloorWorkflow")
class FloorWorkflow:
    @workflow.run
    async def run(self, url: str) -> int:
        result: int = await workflow.execute_activity(
            "floor_post", url, result_type=int, start_to_close_timeout=timedelta(seconds=30))
        return result


async def serve(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    poster = _Poster()
    # Same concurrency limit as Stanch's worker (stanch.worker.build_worker).
    async with Worker(client, task_queue=task_queue, workflows=[FloorWorkflow],
                      activities=[poster.post], max_concurrent_activities=100):
        print("floor.started", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.address, args.task_queue))


if __name__ == "__main__":
    main()
