"""Dev server: the worker dies (kill -9) during a grant and comes back after the expiry.
The durable timer still fires and the revoke still happens; the delay past expiry is printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from stanch.audit import SqliteAuditStore
from stanch.config import Settings
from stanch.models import AuditType
from tests.elevation.helpers import CAROL, groups_of, request, start, wait_pending, wait_state
from workflows.approvals import Verdict
from workflows.elevation import ElevationWorkflow
from workflows.elevation_types import DecisionInput, ElevationState

pytestmark = [pytest.mark.timeout(80), pytest.mark.slow]
WORKER = Path(__file__).with_name("worker_proc.py")


def _spawn(dev_env: WorkflowEnvironment, esettings: Settings, task_queue: str,
           mock_idp: str) -> subprocess.Popen[str]:
    target = dev_env.client.service_client.config.target_host
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), target, task_queue, str(esettings.state_dir), mock_idp,
         esettings.elevation_ledger_namespace],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "STANCH_LOG_LEVEL": "warning"})
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def test_revoke_survives_a_killed_worker(
        dev_env: WorkflowEnvironment, esettings: Settings, task_queue: str, mock_idp: str) -> None:
    client = dev_env.client
    worker = _spawn(dev_env, esettings, task_queue, mock_idp)
    try:
        h = await start(client, task_queue, request(esettings, ["prod-db"], timedelta(seconds=6)))
        await wait_pending(h)
        await h.execute_update(ElevationWorkflow.decide,
                               DecisionInput(verdict=Verdict.approve, principal=CAROL))
        active = await wait_state(h, ElevationState.active)
        assert "prod-db" in groups_of(mock_idp)
        assert active.expires_at is not None

        worker.send_signal(signal.SIGKILL)  # mid-grant: nothing runs the timer's workflow task
        worker.wait(timeout=10)
        await asyncio.sleep(max(0.0, (active.expires_at - datetime.now(UTC)).total_seconds())
                            + 2.0)
        assert "prod-db" in groups_of(mock_idp)  # nobody was there to revoke it

        worker = _spawn(dev_env, esettings, task_queue, mock_idp)
        while "prod-db" in groups_of(mock_idp):
            await asyncio.sleep(0.1)
        removed_at = datetime.now(UTC)
        final = await asyncio.wait_for(h.result(), timeout=30)
        delay = removed_at - active.expires_at
        print(f"\nrevoke delay past expiry: {delay.total_seconds():.2f}s "
              f"(worker down until ≥2s after expiry; workflow ended_at - expires_at = "
              f"{(final.ended_at - active.expires_at).total_seconds():.2f}s)")  # type: ignore[operator]
        assert final.state is ElevationState.expired
        assert delay < timedelta(seconds=30)
    finally:
        worker.kill()
        worker.wait(timeout=10)

    store = SqliteAuditStore(esettings.audit_sqlite_path)
    try:
        types = {r.type for r in store.query(workflow_id=h.id)}
    finally:
        store.close()
    assert {AuditType.elevation_requested, AuditType.elevation_granted,
            AuditType.elevation_revoked, AuditType.elevation_review} <= types
