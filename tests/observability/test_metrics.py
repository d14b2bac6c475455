"""Prometheus: the API's /metrics after a real alert, and the worker's own endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from stanch.api.app import create_app
from stanch.audit import SqliteAuditStore
from stanch.config import ApiToken, Settings, SourceAuth
from stanch.runtime import free_port
from stanch.worker import build_worker, run_worker

VIEWER = "viewer-token-for-metrics"
SOURCE = "generic-source-token"
ALERT = {
    "title": "alice@example.com added to prod-admins", "category": "privilege_escalation",
    "severity": "high", "confidence": "medium", "grants": ["prod-admins"],
    "identities": [{"name": "alice@example.com", "type": "upn", "kind": "user"}],
}


def _with_api(settings: Settings, task_queue: str) -> Settings:
    return settings.model_copy(update={
        "temporal": settings.temporal.model_copy(update={"task_queue": task_queue}),
        "sources": {"generic": SourceAuth(mode="bearer", secrets=[SecretStr(SOURCE)])},
        "api_tokens": [ApiToken(sha256=hashlib.sha256(VIEWER.encode()).hexdigest(),
                                principal="grafana", roles=["viewer"])],
    })


def _series(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


async def test_api_metrics_name_every_series_after_an_alert(
        dev_env: WorkflowEnvironment, settings: Settings, task_queue: str) -> None:
    settings = _with_api(settings, task_queue)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteAuditStore(settings.audit_sqlite_path)
    app = create_app(settings, client=dev_env.client, audit=store)
    transport = httpx.ASGITransport(app=app)
    try:
        async with (build_worker(dev_env.client, settings, store, task_queue=task_queue),
                    httpx.AsyncClient(transport=transport, base_url="http://api") as api):
            alert = ALERT | {"id": uuid.uuid4().hex}
            r = await api.post("/v1/alerts/generic", content=json.dumps(alert),
                               headers={"Authorization": f"Bearer {SOURCE}"})
            assert r.status_code == 202, r.text
            wid = r.json()["workflow_id"]
            refused = await api.post("/v1/alerts/generic", content=b"{}",
                                     headers={"Authorization": "Bearer wrong"})
            assert refused.status_code == 401
            assert (await api.get("/metrics")).status_code == 401  # viewer role needed
            text = ""
            for _ in range(100):
                m = await api.get("/metrics", headers={"Authorization": f"Bearer {VIEWER}"})
                assert m.status_code == 200
                text = m.text
                if ("stanch_containment_actions_total" in _series(text)
                        and "stanch_containments_open" in _series(text)
                        and _ttc_count(text) >= 1):
                    break  # the histogram is observed just after the action is counted
                await asyncio.sleep(0.1)
            await dev_env.client.get_workflow_handle(wid).terminate("test done")
    finally:
        store.close()
    series = _series(text)
    assert {
        "stanch_alerts_received_total", "stanch_alerts_refused_total",
        "stanch_containments_open", "stanch_containment_actions_total",
        "stanch_approvals_pending", "stanch_approval_oldest_age_seconds",
        "stanch_provider_calls_total", "stanch_time_to_contain_seconds_count",
        "stanch_time_to_contain_seconds_bucket",
    } <= series, sorted(s for s in series if s.startswith("stanch"))
    assert "# TYPE stanch_provider_errors_total counter" in text or \
        "# TYPE stanch_provider_errors counter" in text
    assert 'stanch_alerts_refused_total{reason="unauthenticated",source="generic"}' in text \
        or 'source="generic"' in text
    assert 'stanch_provider_calls_total{action="reduce_scope",provider="mock"}' in text
    assert 'stanch_containment_actions_total{action="reduce_scope",rung="1",status="applied"}' \
        in text
    assert _ttc_count(text) >= 1, text


def _ttc_count(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("stanch_time_to_contain_seconds_count"):
            return float(line.split()[-1])
    return 0.0


async def test_worker_serves_its_metrics_and_the_sdks(
        dev_env: WorkflowEnvironment, settings: Settings, tmp_path: Path) -> None:
    ports = free_port(), free_port()
    target = dev_env.client.service_client.config.target_host
    settings = settings.model_copy(update={
        "temporal": settings.temporal.model_copy(update={
            "address": target, "task_queue": f"tq-{uuid.uuid4().hex[:8]}"}),
        "metrics_port": ports[0], "temporal_metrics_port": ports[1],
    })
    stop = asyncio.Event()
    task = asyncio.create_task(run_worker(settings, stop))
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            own = sdk = None
            for _ in range(100):
                try:
                    own = await http.get(f"http://127.0.0.1:{ports[0]}/metrics")
                    sdk = await http.get(f"http://127.0.0.1:{ports[1]}/metrics")
                    if "temporal_" in sdk.text:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        assert own is not None and own.status_code == 200
        assert "stanch_provider_calls_total" in own.text or "stanch_provider_calls" in own.text
        assert "stanch_time_to_contain_seconds" in own.text
        assert sdk is not None and sdk.status_code == 200 and "temporal_" in sdk.text, sdk
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_a_taken_metrics_port_does_not_stop_the_worker() -> None:
    from stanch.metrics import serve_worker_metrics

    port = free_port()
    assert serve_worker_metrics("127.0.0.1", port) is True
    assert serve_worker_metrics("127.0.0.1", port) is False  # taken: logged, not fatal
    assert serve_worker_metrics("127.0.0.1", 0) is False


@pytest.mark.parametrize("port", [0])
def test_sdk_metrics_off(port: int, settings: Settings) -> None:
    from stanch.temporal import metrics_runtime

    assert metrics_runtime(settings.model_copy(update={"temporal_metrics_port": port})) is None
