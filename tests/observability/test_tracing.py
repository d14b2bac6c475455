"""OpenTelemetry through Temporal's interceptor: off by default, spans when on, and no
collector breaks nothing."""

from __future__ import annotations

import asyncio
import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import WorkflowEnvironment

from stanch.config import Settings, TracingSettings
from stanch.runtime import free_port
from stanch.temporal import connect, tracing_interceptors
from tests.workflows.helpers import alert, handle, playbook, running_worker, send_alert

LADDER = playbook([{"action": "reduce_scope", "description": "remove privileged groups"}])


def _traced(settings: Settings, address: str, endpoint: str | None = None) -> Settings:
    tracing = TracingSettings(enabled=True, **({"otlp_endpoint": endpoint} if endpoint else {}))
    return settings.model_copy(update={
        "tracing": tracing,
        "temporal": settings.temporal.model_copy(update={"address": address}),
    })


def test_tracing_is_off_by_default(settings: Settings) -> None:
    assert settings.tracing.enabled is False
    assert tracing_interceptors(settings) == []


async def test_tracing_on_creates_spans_for_workflow_and_activities(
        dev_env: WorkflowEnvironment, settings: Settings, task_queue: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    address = dev_env.client.service_client.config.target_host
    client = await connect(_traced(settings, address), tracer_provider=provider)
    async with running_worker(client, settings, task_queue):
        result = await send_alert(client, task_queue, alert(key=uuid.uuid4().hex), [LADDER])
        assert result.queued
        h = handle(client, task_queue)
        for _ in range(100):
            st = await h.query("status")
            if st["steps"] and st["steps"][0]["status"] == "applied":
                break
            await asyncio.sleep(0.05)
    names = {s.name for s in exporter.get_finished_spans()}
    assert "HandleUpdate:add_alert" in names and "QueryWorkflow:status" in names, names
    assert "RunWorkflow:ContainmentWorkflow" in names, names
    assert "RunActivity:apply_action" in names, names


async def test_tracing_on_with_no_collector_still_contains(
        dev_env: WorkflowEnvironment, settings: Settings, task_queue: str) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v1/traces"
    address = dev_env.client.service_client.config.target_host
    client = await connect(_traced(settings, address, nobody))
    async with running_worker(client, settings, task_queue):
        await send_alert(client, task_queue, alert(key=uuid.uuid4().hex), [LADDER])
        h = handle(client, task_queue)
        status = None
        for _ in range(100):
            status = await h.query("status")
            if status["steps"] and status["steps"][0]["status"] == "applied":
                break
            await asyncio.sleep(0.05)
    assert status is not None and status["steps"][0]["status"] == "applied", status
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    assert provider.force_flush(5000) in (True, False)  # type: ignore[attr-defined]
    # Shut the exporter down here, inside the test: left to interpreter exit, its last
    # failed export would print after pytest's summary line.
    provider.shutdown()  # type: ignore[attr-defined]
