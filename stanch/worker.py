"""The Temporal worker: Stanch's workflows and the activities that do its I/O."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit import AuditActivities
from activities.containment import ContainmentActivities
from activities.elevation import ElevationActivities
from activities.notify import NotifyActivities
from activities.providers.registry import ProviderPool
from activities.ssf import SsfActivities
from stanch.audit import AuditStore, checkpoint_key, open_store
from stanch.audit.checkpoint import run_checkpoints
from stanch.audit.outbox import OutboxShipper
from stanch.config import Settings
from stanch.logging import get_logger
from stanch.metrics import serve_worker_metrics
from stanch.temporal import connect, metrics_runtime
from workflows import WORKFLOWS

log = get_logger("stanch.worker")

# The sandbox re-imports workflow code for every run. Our models, the pure planner and the
# approval rules hold no clock, randomness or I/O, and building pydantic classes again per
# run cost ~70 ms of CPU each: pass them through, keep the workflow modules sandboxed.
PASSTHROUGH = (
    "stanch", "workflows.approvals", "workflows.containment_types",
    "workflows.elevation_types", "pydantic", "pydantic_core", "annotated_types",
    "typing_extensions", "yaml",
)
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))


def activities_for(settings: Settings, audit: AuditStore,
                   providers: ProviderPool | None = None) -> list[Callable[..., Any]]:
    containment = ContainmentActivities(settings, audit, providers)
    auditing = AuditActivities(audit)
    notify = NotifyActivities(settings)
    elevation = ElevationActivities(settings, audit, containment.providers)
    return [
        containment.apply_action,
        containment.undo_action,
        containment.snapshot_identity,
        containment.snapshot_approvers,
        containment.request_approval,
        auditing.record_audit,
        auditing.record_audit_batch,
        notify.notify,
        elevation.acquire_scope_lease,
        elevation.release_scope_lease,
        elevation.grant_scope,
        elevation.revoke_scope,
        elevation.elevation_review,
        SsfActivities(settings).push_pending,
    ]


def build_worker(client: Client, settings: Settings, audit: AuditStore, *,
                 task_queue: str | None = None,
                 extra_activities: Sequence[Callable[..., Any]] = (),
                 providers: ProviderPool | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=list(WORKFLOWS),
        activities=[*activities_for(settings, audit, providers), *extra_activities],
        max_concurrent_activities=100,
        workflow_runner=SANDBOX,
        # After a worker dies, its sticky (cached) workflow tasks wait this long before
        # going to another worker: keep fail-over to a restarted worker quick.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
    )


def cache_workflow_bytecode(settings: Settings) -> None:
    """Let the sandbox's per-run imports load compiled bytecode instead of compiling.

    The sandbox imports the workflow modules afresh for every new run (and every replay of
    an evicted one). With no bytecode cache (``PYTHONDONTWRITEBYTECODE`` set, or a read-only
    tree) each import compiles the module source again: a fifth of the worker's CPU under
    load (docs/benchmarks.md). Compiled code then goes under the state dir, outside the tree.
    """
    tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not sys.dont_write_bytecode and os.access(os.path.join(tree, "workflows"), os.W_OK):
        return
    prefix = (settings.state_dir / "pycache").resolve()
    prefix.mkdir(parents=True, exist_ok=True)
    sys.pycache_prefix = str(prefix)
    sys.dont_write_bytecode = False
    log.info("worker.bytecode_cache", path=str(prefix))


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    cache_workflow_bytecode(settings)
    _serve_metrics(settings)
    client = await connect(settings, retries=60, runtime=metrics_runtime(settings))
    audit = open_store(settings)
    providers = ProviderPool(settings)
    worker = build_worker(client, settings, audit, providers=providers)
    stop = stop or asyncio.Event()
    background = _audit_background(settings, audit, stop)
    if settings.ssf.enabled:
        from stanch.ssf.delivery import Emitter

        background.append(asyncio.create_task(Emitter(settings, audit, client).run(stop)))
    log.info("worker.started", task_queue=settings.temporal.task_queue,
             temporal=settings.temporal.address)
    try:
        async with worker:
            await stop.wait()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await providers.aclose()
        audit.close()
        log.info("worker.stopped")


def _serve_metrics(settings: Settings) -> None:
    """Stanch's own metrics (provider calls, time to contain, …) on ``metrics_port``."""
    if settings.metrics_port == 0:
        return
    if serve_worker_metrics(settings.metrics_host, settings.metrics_port):
        log.info("worker.metrics", address=f"{settings.metrics_host}:{settings.metrics_port}")
    else:
        log.warning("worker.metrics_unavailable", port=settings.metrics_port,
                    reason="cannot bind; the worker runs without its metrics endpoint")


def _audit_background(settings: Settings, audit: AuditStore,
                      stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The SIEM outbox shipper and the periodic signed checkpoint, when configured."""
    tasks: list[asyncio.Task[None]] = []
    shipper = OutboxShipper.from_settings(audit, settings)
    if shipper is not None:
        tasks.append(asyncio.create_task(shipper.run(stop)))
    key = checkpoint_key(settings)
    if key is not None:
        tasks.append(asyncio.create_task(run_checkpoints(
            audit, key, settings.audit.checkpoint_interval_seconds, stop)))
    return tasks
