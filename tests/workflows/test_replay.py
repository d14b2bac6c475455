"""Determinism: recorded workflow histories (kept in tests/workflows/histories/) replay
against the current workflow code, and so do fresh ones made by this run.

A change that breaks replay of a recorded history would break every containment running
in production when the worker is upgraded. To record new histories (after an intentional,
versioned change), run: ``STANCH_RECORD_HISTORIES=1 pytest tests/workflows/test_replay.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from stanch.config import Settings
from stanch.models import Level
from stanch.worker import SANDBOX
from tests.workflows.helpers import alert, handle, playbook, principal, running_worker, send_alert
from workflows import WORKFLOWS
from workflows.approvals import Verdict
from workflows.containment import CURRENT, ContainmentWorkflow
from workflows.containment_types import (
    DecisionInput,
    ResolveInput,
    ResolveVerdict,
    StepStatus,
)

HISTORIES = Path(__file__).resolve().parent / "histories"


def _replayer() -> Replayer:
    return Replayer(workflows=list(WORKFLOWS), data_converter=pydantic_data_converter,
                    workflow_runner=SANDBOX)


async def _until(h, pred, tries: int = 300):  # type: ignore[no-untyped-def]
    for _ in range(tries):
        st = await h.query(ContainmentWorkflow.status)
        if pred(st):
            return st
        await asyncio.sleep(0.03)
    raise AssertionError("condition not reached")


async def _scenario_full_ladder(client: Client, tq: str, env: WorkflowEnvironment) -> str:
    """Alert → auto step → approval (2 votes) → revert timer → false-positive resolve."""
    pb = playbook([
        {"action": "reduce_scope", "revert_after": "2h"},
        {"action": "revoke", "approval": {"groups": ["soc-approvers"], "quorum": 2,
                                          "deadline": "1h",
                                          "escalation": [{"after": "10m",
                                                          "groups": ["soc-leads"]}]}},
    ])
    await send_alert(client, tq, alert(severity=Level.high), [pb])
    h = handle(client, tq)
    await _until(h, lambda s: s.pending_approvals)
    await env.sleep(timedelta(minutes=11))
    for who in ("carol", "dave"):
        await h.execute_update(ContainmentWorkflow.decide, DecisionInput(
            step_id="test-ladder:1:revoke", verdict=Verdict.approve,
            principal=principal(who, "soc-approvers")))
    await _until(h, lambda s: s.steps[1].status is StepStatus.applied)
    await env.sleep(timedelta(hours=2, minutes=1))
    await _until(h, lambda s: s.steps[0].status is StepStatus.reverted)
    await h.execute_update(ContainmentWorkflow.resolve, ResolveInput(
        verdict=ResolveVerdict.false_positive, principal="carol", reason="replay scenario"))
    await h.result()
    return h.id


async def test_fresh_history_replays(ts_env: WorkflowEnvironment, settings: Settings,
                                     task_queue: str, mock_idp: str) -> None:
    async with running_worker(ts_env.client, settings, task_queue):
        wid = await _scenario_full_ladder(ts_env.client, task_queue, ts_env)
        history = await ts_env.client.get_workflow_handle(wid).fetch_history()
    result = await _replayer().replay_workflow(history)
    assert result.replay_failure is None
    if os.environ.get("STANCH_RECORD_HISTORIES") == "1":
        HISTORIES.mkdir(exist_ok=True)
        (HISTORIES / "containment-full-ladder.json").write_text(history.to_json())


async def test_fresh_elevation_histories_replay(ts_env: WorkflowEnvironment,
                                                settings: Settings, task_queue: str,
                                                mock_idp: str) -> None:
    """ElevationWorkflow and the ScopeLeaseWorkflow ledger it drives: grant, expiry."""
    from tests.elevation.helpers import (
        BOB,
        CAROL,
        configure,
        request,
        start,
        wait_pending,
    )
    from tests.elevation.helpers import running_worker as elevation_worker
    from workflows.elevation import ElevationWorkflow
    from workflows.elevation_types import DecisionInput as ElevationDecision
    from workflows.elevation_types import lease_workflow_id

    esettings = configure(settings, task_queue)
    client = ts_env.client
    async with elevation_worker(client, esettings, task_queue):
        h = await start(client, task_queue,
                        request(esettings, ["prod-db"], timedelta(minutes=30)))
        await wait_pending(h)
        await h.execute_update(ElevationWorkflow.decide, ElevationDecision(
            verdict=Verdict.approve, principal=CAROL, comment="replay scenario"))
        await ts_env.sleep(timedelta(minutes=31))
        await h.result()
        lease = client.get_workflow_handle(
            lease_workflow_id(BOB.key, "prod-db", esettings.elevation_ledger_namespace))
        await lease.result()
        histories = {"elevation-grant-expire": await h.fetch_history(),
                     "scope-lease-grant-expire": await lease.fetch_history()}
    for name, history in histories.items():
        result = await _replayer().replay_workflow(history)
        assert result.replay_failure is None, name
        if os.environ.get("STANCH_RECORD_HISTORIES") == "1":
            HISTORIES.mkdir(exist_ok=True)
            (HISTORIES / f"{name}.json").write_text(history.to_json())


async def test_fresh_history_with_a_skipped_step_replays(
        ts_env: WorkflowEnvironment, settings: Settings, task_queue: str,
        mock_idp: str) -> None:
    """A step the provider lacks is kept as skipped behind the `plan-skips-unsupported`
    patch (the planner sees the provider type; the mock IdP still does the work). A new run
    takes it, and every other patch, through the one CURRENT marker."""
    from tests.workflows.helpers import ALICE

    scim_alice = ALICE.model_copy(update={"provider_type": "scim"})
    pb = playbook([{"action": "reduce_scope"}, {"action": "force_reauth"}])
    async with running_worker(ts_env.client, settings, task_queue):
        result = await send_alert(ts_env.client, task_queue, alert(), [pb], scim_alice)
        assert list(result.skipped) == ["test-ladder:1:force_reauth"]
        h = handle(ts_env.client, task_queue, scim_alice)
        st = await _until(h, lambda s: s.steps[0].status is StepStatus.applied)
        assert st.steps[1].status is StepStatus.skipped
        await h.execute_update(ContainmentWorkflow.resolve, ResolveInput(
            verdict=ResolveVerdict.true_positive, principal="carol", reason="replay"))
        await h.result()
        history = await h.fetch_history()
    patches = [p.data for e in history.events
               if e.HasField("marker_recorded_event_attributes")
               for p in e.marker_recorded_event_attributes.details["patch-data"].payloads]
    assert len(patches) == 1 and CURRENT.encode() in patches[0], patches
    replayed = await _replayer().replay_workflow(history)
    assert replayed.replay_failure is None
    if os.environ.get("STANCH_RECORD_HISTORIES") == "1":
        (HISTORIES / "containment-plan-skips.json").write_text(history.to_json())


def _recorded() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


@pytest.mark.parametrize("path", _recorded(), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path) -> None:
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(path.stem, data)
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


def test_recorded_histories_exist() -> None:
    names = {p.stem for p in _recorded()}
    for wanted in ("containment-full-ladder", "elevation-grant-expire",
                   "scope-lease-grant-expire", "containment-plan-skips",
                   # recorded before the patches were folded into CURRENT
                   "containment-full-ladder-patches-v2", "containment-plan-skips-patches-v2"):
        assert wanted in names, f"{wanted}: record with STANCH_RECORD_HISTORIES=1"
